using System.Text.Json;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

/// <summary>
/// Issue 20: the runtime the shim starts inside the debugger must not create its default EventSources. Their
/// EventSourceAttribute reflection emits DynamicMethod invoke stubs whose finalizer (DynamicResolver.DestroyScout)
/// killed the debugger process under wine with W^X ("Internal CLR error 0x80131506") after a few commands.
/// </summary>
public class RuntimeConfigTests
{
    [Test]
    public void ExtensionRuntimeConfigDisablesEventSources()
    {
        // Built beside the extension (Extension/bin/<Configuration>/net10.0), the configuration being the test's own.
        var config = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd('/', '\\'))!);
        var path = Path.Combine(TestPaths.RepoRoot, "Extension", "bin", config, "net10.0", "NtSleuth.Extension.runtimeconfig.json");
        Assert.That(File.Exists(path), Is.True, $"runtimeconfig not found: {path}");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var props = doc.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.That(props.TryGetProperty("System.Diagnostics.Tracing.EventSource.IsSupported", out var v), Is.True,
            "EventSource.IsSupported missing from the extension's runtimeconfig");
        Assert.That(v.GetBoolean(), Is.False);
    }
}
