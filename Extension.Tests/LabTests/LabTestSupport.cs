using NtSleuth.Lab.Scenario;
using NUnit.Framework;

namespace NtSleuth.Tests.LabTests;

/// <summary>Shared helpers for lab tests: the build for a key, or Assert.Ignore with the reason when ../shared is absent.</summary>
public static class LabTestSupport
{
    public static LabBuild BuildOrIgnore(string key)
    {
        if (LabBuilds.UnavailableReason is { } why) Assert.Ignore(why);
        var b = LabBuilds.TryGet(key);
        if (b is null) Assert.Ignore($"lab build '{key}' is not in ../shared/realdata/isf/ntkrnlmp.pdb");
        return b!;
    }
}
