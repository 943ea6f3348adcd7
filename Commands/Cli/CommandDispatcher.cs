using NtSleuth.Commands.Memory;
using NtSleuth.Commands.Model;
using NtSleuth.Commands.Output;
using NtSleuth.Commands.Symbols;
using NtSleuth.Commands.Target;

namespace NtSleuth.Commands.Cli;

/// <summary>
/// Runs a command by name with the exception barrier: nothing escapes. Returns an HRESULT for the engine.
/// </summary>
public static class CommandDispatcher
{
    public const int S_OK = 0;
    public const int E_FAIL = unchecked((int)0x80004005);
    public const int E_INVALIDARG = unchecked((int)0x80070057);
    public const int E_ABORT = unchecked((int)0x80004004);

    public static int Run(string name, string? args, ITarget target, IOutputSink sink, ReadStats? stats = null)
    {
        try
        {
            if (string.Equals(name, "help", StringComparison.OrdinalIgnoreCase))
            {
                sink.Write(CommandRegistry.HelpText(), false);
                return S_OK;
            }
            var cmd = CommandRegistry.Find(name);
            if (cmd is null)
            {
                sink.WriteError($"ntsleuth: unknown command '{name}'. Run !ntsleuth.help for the list.\n");
                return E_INVALIDARG;
            }
            return RunCommand(cmd, args, target, sink, stats);
        }
        catch (Exception ex)
        {
            SafeError(sink, $"ntsleuth: internal error: {ex.GetType().Name}: {ex.Message}\n");
            return E_FAIL;
        }
    }

    private static int RunCommand(ICommand cmd, string? args, ITarget target, IOutputSink sink, ReadStats? stats)
    {
        ParsedArgs parsed;
        try
        {
            parsed = ParsedArgs.Parse(args, cmd.Spec);
        }
        catch (UsageException ue)
        {
            sink.WriteError($"!{cmd.Name}: {ue.Message}\n");
            sink.Write(cmd.Usage, false);
            return E_INVALIDARG;
        }
        if (parsed.WantsHelp)
        {
            sink.Write(cmd.Usage, false);
            return S_OK;
        }
        CommandContext? ctx = null;
        try
        {
            ctx = new CommandContext(target, sink, parsed, stats);
            cmd.Execute(ctx);
            if (parsed.Has("stats"))
                sink.Write($"[ntsleuth] {ctx.Stats}\n", false);
            return S_OK;
        }
        catch (UsageException ue)
        {
            sink.WriteError($"!{cmd.Name}: {ue.Message}\n");
            sink.Write(cmd.Usage, false);
            return E_INVALIDARG;
        }
        catch (CommandFailedException cf)
        {
            sink.WriteError($"!{cmd.Name}: {cf.Message}\n");
            return E_FAIL;
        }
        catch (MissingSymbolException ms)
        {
            sink.WriteError($"!{cmd.Name}: {ms.Message}\n");
            return E_FAIL;
        }
        catch (OperationCanceledException oce)
        {
            // The target says where it stopped ("... while loading the layout of nt!_ETHREAD from the symbols").
            string where = oce.Message.StartsWith("interrupted by user", StringComparison.Ordinal) ? oce.Message : "interrupted by user (Ctrl+Break)";
            sink.WriteError($"!{cmd.Name}: {where}; nothing to show yet.\n");
            return E_ABORT;
        }
        catch (TargetReadException tr)
        {
            sink.WriteError($"!{cmd.Name}: {tr.Message}\n");
            return E_FAIL;
        }
        catch (Exception ex)
        {
            SafeError(sink, $"!{cmd.Name}: internal error: {ex.GetType().FullName}: {ex.Message}\n" +
                            (parsed.Verbose ? ex.StackTrace + "\n" : "  (run with -v for the stack; please report it)\n"));
            return E_FAIL;
        }
    }

    private static void SafeError(IOutputSink sink, string text)
    {
        try { sink.WriteError(text); } catch { /* the barrier: never throw into the engine */ }
    }
}
