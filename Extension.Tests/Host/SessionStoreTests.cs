using NtSleuth.Commands.Target;
using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>Results commands keep for the session (ITarget.Session, e.g. !leaktag's module searches on a dump) go when
/// the engine session cache goes: session inactive/active, extension unloaded (another dump), and any Clear (module
/// list changed, symbols reloaded, an interrupted command: EngineSessionCache.Begin/End).</summary>
[NonParallelizable]
public class SessionStoreTests
{
    [Test]
    public void TheStoreIsDroppedWithTheSessionCache()
    {
        var store = EngineSessionCache.Store;
        try
        {
            foreach (uint notify in new uint[] { 0, 1, EngineSessionCache.ExtensionUnloaded })
            {
                store.Put("k", "v");
                EngineSessionCache.OnNotify(notify);
                Assert.That(store.Count, Is.EqualTo(0), $"notify {notify}");
            }
            store.Put("k", "v");
            EngineSessionCache.OnNotify(2); // DEBUG_NOTIFY_SESSION_ACCESSIBLE: the target is the same
            Assert.That(store.TryGet<string>("k", out var v) && v == "v", Is.True);
            EngineSessionCache.Clear();
            Assert.That(store.Count, Is.EqualTo(0));
        }
        finally { EngineSessionCache.Clear(); }
    }

    [Test]
    public void TheStoreIsBounded()
    {
        var s = new SessionStore();
        for (int i = 0; i < SessionStore.MaxEntries + 10; i++) s.Put($"k{i}", "v");
        Assert.That(s.Count, Is.LessThanOrEqualTo(SessionStore.MaxEntries));
        Assert.That(s.TryGet<string>($"k{SessionStore.MaxEntries + 9}", out _), Is.True, "the newest is kept");
        Assert.That(s.TryGet<string>("k0", out _), Is.False, "the oldest went");
    }
}
