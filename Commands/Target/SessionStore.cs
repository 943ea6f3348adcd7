namespace NtSleuth.Commands.Target;

/// <summary>
/// Results a command keeps for the debugger session, by key (e.g. <c>!leaktag</c>'s module searches on a dump). The
/// target that offers it (<see cref="ITarget.Session"/>) drops everything when what the results were derived from may
/// have changed: a module loaded, unloaded or replaced, symbols reloaded, another target, an interrupted command
/// (Extension/EngineSessionCache). Keys must name everything a result depends on (module base, size, timestamp, the
/// question). Bounded: past <see cref="MaxEntries"/> the oldest half is dropped.
/// </summary>
public sealed class SessionStore
{
    public const int MaxEntries = 4096;
    private readonly object _lock = new();
    private readonly Dictionary<string, object> _items = new(StringComparer.Ordinal);
    private readonly Queue<string> _order = new();

    public int Count { get { lock (_lock) return _items.Count; } }

    public bool TryGet<T>(string key, out T value) where T : class
    {
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var o) && o is T t) { value = t; return true; }
        }
        value = null!;
        return false;
    }

    public void Put(string key, object value)
    {
        lock (_lock)
        {
            if (!_items.ContainsKey(key)) _order.Enqueue(key);
            _items[key] = value;
            if (_items.Count <= MaxEntries) return;
            while (_items.Count > MaxEntries / 2 && _order.TryDequeue(out var old)) _items.Remove(old);
        }
    }

    public void Clear() { lock (_lock) { _items.Clear(); _order.Clear(); } }
}
