namespace NtSleuth.Lab;

public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "forge") return Forge.ForgeCli.Run(args[1..]);
        if (args.Length > 0 && args[0] == "make-samples") return Samples.SampleMaker.Run(args[1..]);
        Console.Error.WriteLine("usage: NtSleuth.Lab make-samples <outdir> | bench");
        return 2;
    }
}
