using NtSleuth.Commands.Model;

namespace NtSleuth.Commands.Kernel;

/// <summary>
/// Names of driver objects (nt!_DRIVER_OBJECT), cached for the run: DriverName (<c>\Driver\Foo</c>,
/// <c>\FileSystem\Bar</c>), the service key (DriverExtension->ServiceKeyName) and a device's driver.
/// One instance per command run.
/// </summary>
public sealed class DriverNames(KernelReader reader)
{
    private readonly Dictionary<ulong, string?> _names = new();
    private readonly Dictionary<ulong, string?> _services = new();

    /// <summary>DRIVER_OBJECT.DriverName of <paramref name="driver"/>; null when NULL or unreadable.</summary>
    public string? Name(ulong driver)
    {
        if (driver == 0) return null;
        if (_names.TryGetValue(driver, out var n)) return n;
        n = reader.ReadUnicodeString(driver + reader.Types.FieldOffset("nt", "_DRIVER_OBJECT", "DriverName"));
        _names[driver] = n;
        return n;
    }

    /// <summary>DRIVER_OBJECT.DriverExtension->ServiceKeyName (the driver's service key name); null when absent, empty or unreadable.</summary>
    public string? ServiceKey(ulong driver)
    {
        if (driver == 0) return null;
        if (_services.TryGetValue(driver, out var n)) return n;
        n = null;
        var T = reader.Types;
        if (T.TryGet("nt", "_DRIVER_EXTENSION") is not null &&
            reader.TryReadPointer(driver + T.FieldOffset("nt", "_DRIVER_OBJECT", "DriverExtension")) is { } ext && ext != 0)
        {
            n = reader.ReadUnicodeString(ext + T.FieldOffset("nt", "_DRIVER_EXTENSION", "ServiceKeyName"));
            if (string.IsNullOrWhiteSpace(n)) n = null;
        }
        _services[driver] = n;
        return n;
    }

    /// <summary>DEVICE_OBJECT.DriverObject of <paramref name="device"/> (one small read). Throws <see cref="TargetReadException"/> when unreadable.</summary>
    public ulong DriverOf(ulong device) => reader.ReadFields("nt", "_DEVICE_OBJECT", device, "DriverObject").Ptr("DriverObject");

    /// <summary>The last component of a driver object name: <c>\FileSystem\Foo</c> -> <c>Foo</c>.</summary>
    public static string ShortName(string driverName)
    {
        int i = driverName.LastIndexOf('\\');
        return i >= 0 ? driverName[(i + 1)..] : driverName;
    }
}
