using System.CommandLine;
using System.Text.Json;
using Xunit;

namespace Kiln.Tests.TestKit;

/// <summary>Runs one <c>kiln</c> verb in process, as the command line would, with standard output and error captured.</summary>
public static class CliRun
{
    /// <summary>Runs <paramref name="verb"/> under a root command with <paramref name="args"/> (the verb's name first); returns the exit code and both streams.</summary>
    public static (int Code, string Out, string Err) Capture(Command verb, params string[] args)
    {
        var root = new RootCommand("kiln");
        root.Subcommands.Add(verb);
        var (savedOut, savedErr) = (Console.Out, Console.Error);
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        Console.SetOut(stdout); Console.SetError(stderr);
        try { return (Kiln.Cli.Cli.Run(root, args), stdout.ToString(), stderr.ToString()); }
        finally { Console.SetOut(savedOut); Console.SetError(savedErr); }
    }

    /// <summary>Runs a <c>--json</c> verb that must succeed and print exactly one JSON object; returns it.</summary>
    public static JsonElement JsonObject(Command verb, params string[] args)
    {
        var (code, stdout, stderr) = Capture(verb, args);
        Assert.True(code == 0, stderr);
        var line = Assert.Single(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        using var doc = JsonDocument.Parse(line);
        return doc.RootElement.Clone();
    }
}
