namespace NtSleuth.Lab;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("usage: NtSleuth.Lab make-samples <outdir> | bench");
        return 2;
    }
}
