using NtSleuth.Commands.Cli;

namespace NtSleuth.Commands.Dhcp;

public sealed class DhcpTimerCommand : ICommand
{
    public string Name => "dhcptimer";
    public string Summary => "DHCP client lease timers and the 32-bit wait overflow";
    public ArgSpec Spec { get; } = new ArgSpec { MaxPositionals = 0 }.Option("lease");
    public string Usage => """
Usage: !dhcptimer [-json]
       !dhcptimer -lease <seconds | d.hh:mm:ss>
  On the svchost hosting the DHCP client (dhcpcore.dll): each adapter's lease, T1, T2, expiry
  and next run time, a verdict, and the millisecond wait checked against 32 bits (INFINITE).
  -lease       no target needed: T1/T2 and the 32-bit overflow check for a lease length
""" + "\n";

    public void Execute(CommandContext ctx)
    {
        ctx.Sink.WriteError("!dhcptimer: not implemented yet\n");
    }
}
