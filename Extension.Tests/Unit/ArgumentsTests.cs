using NtSleuth.Commands.Cli;
using NUnit.Framework;

namespace NtSleuth.Tests.Unit;

public class ArgumentsTests
{
    private static readonly ArgSpec Spec = new ArgSpec { MaxPositionals = 1 }.Flag("all").Option("p", "n");

    [Test]
    public void ParsesFlagsOptionsAndExpression()
    {
        var a = ParsedArgs.Parse("-p fffffa80`12345678 -json", Spec);
        Assert.That(a.Get("p"), Is.EqualTo("fffffa80`12345678"));
        Assert.That(a.Has("json"), Is.True);
        Assert.That(a.Positionals, Is.Empty);
    }

    [Test]
    public void UnknownOptionIsAUsageError() =>
        Assert.Throws<UsageException>(() => ParsedArgs.Parse("-bogus", Spec));

    [Test]
    public void MissingOptionValueIsAUsageError() =>
        Assert.Throws<UsageException>(() => ParsedArgs.Parse("-n", Spec));

    [Test]
    public void TooManyPositionalsIsAUsageError() =>
        Assert.Throws<UsageException>(() => ParsedArgs.Parse("a b", Spec));

    [Test]
    public void QuestionMarkAsksForHelp() => Assert.That(ParsedArgs.Parse("-?", Spec).WantsHelp, Is.True);
}
