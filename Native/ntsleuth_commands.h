/* Generated from Commands/commands.txt by Commands/CommandList.targets. Do not edit. */
/* One export per command, in !help order (ntsleuth.c defines NTSLEUTH_COMMAND). */
NTSLEUTH_COMMAND(alpcchain)
NTSLEUTH_COMMAND(leaktag)
NTSLEUTH_COMMAND(dpcblame)
NTSLEUTH_COMMAND(nblowners)
NTSLEUTH_COMMAND(frameorder)
NTSLEUTH_COMMAND(dhcptimer)
NTSLEUTH_COMMAND(workqueue)
