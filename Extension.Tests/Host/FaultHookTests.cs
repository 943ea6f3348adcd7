using NtSleuth.Extension;
using NUnit.Framework;

namespace NtSleuth.Tests.Host;

public class FaultHookTests
{
    [Test]
    public void NoVariableNoFault() => Assert.DoesNotThrow(() => NtSleuth.Extension.Host.InjectTestFault(null));

    [Test]
    public void ThrowModeThrowsInvalidOperation() =>
        Assert.That(() => NtSleuth.Extension.Host.InjectTestFault("throw"), Throws.InstanceOf<InvalidOperationException>());

    [Test]
    public void AvModeFaultsAsAManagedException()
    {
        // A bad native pointer read must surface as a catchable exception (the barrier reports it), not kill the process.
        Assert.That(() => NtSleuth.Extension.Host.InjectTestFault("av"),
            Throws.InstanceOf<AccessViolationException>().Or.InstanceOf<NullReferenceException>());
    }

    [Test]
    public void NullClientIsReportedNotThrown() =>
        Assert.That(NtSleuth.Extension.Host.Run(IntPtr.Zero, "help", null), Is.LessThan(0));
}
