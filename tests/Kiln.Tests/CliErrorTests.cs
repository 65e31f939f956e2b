using System.CommandLine;
using Kiln.Cli;
using Spectre.Console;
using Xunit;

namespace Kiln.Tests;

/// <summary>`kiln`'s error contract: every error a user can cause ends with one line on stderr and exit 2 (bad input)
/// or 1 (anything else), with a stack trace only under KILN_TRACE=1.</summary>
[Collection(nameof(SerialCollection))]
public class CliErrorTests
{
    static (int Code, string[] Lines) RunKiln(Command verb, params string[] args)
    {
        var root = new RootCommand("kiln");
        root.Subcommands.Add(verb);
        var err = new StringWriter();
        var saved = Console.Error;
        Console.SetError(err);
        try { return (Cli.Cli.Run(root, args), err.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)); }
        finally { Console.SetError(saved); }
    }

    static string Last(string[] lines) => Assert.Single(lines, l => l.StartsWith("kiln: "));

    // A small separable data set: 2 features and a 0/1 label.
    static string DataCsv(DirectoryInfo dir, string name = "d.csv")
    {
        string path = Path.Combine(dir.FullName, name);
        File.WriteAllLines(path, ["a,b,y", .. Enumerable.Range(0, 40).Select(i => $"{i / 40.0},{i % 3},{i % 2}")]);
        return path;
    }

    [Fact]
    public void Out_naming_a_folder_or_a_missing_folder_is_bad_usage_before_any_work()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-cli-");
        try
        {
            var data = DataCsv(dir);
            var (code, lines) = RunKiln(SmoothVerb.Build(), "smooth", "train", "--data", data, "--out", dir.FullName);
            Assert.Equal(Cli.Cli.BadUsage, code);
            Assert.Equal($"kiln: --out {dir.FullName}: is a folder; name a file", Assert.Single(lines));

            string missing = Path.Combine(dir.FullName, "no", "model.json");
            (code, lines) = RunKiln(SmoothVerb.Build(), "smooth", "train", "--data", data, "--out", missing);
            Assert.Equal(Cli.Cli.BadUsage, code);
            Assert.Contains("does not exist", Assert.Single(lines));

            (code, lines) = RunKiln(EmitVerb.Build(), "emit", "--target", "opencl", "--kernel", "reduce.rows.f32", "--out", data);
            Assert.Equal(Cli.Cli.BadUsage, code);
            Assert.Equal($"kiln: --out {data}: is a file; name a folder", Assert.Single(lines));
            Assert.Equal(Cli.Cli.BadUsage, RunKiln(EmitVerb.Build(), "emit", "--target", "opencl", "--kernel", "reduce.rows.f32", "--out", Path.Combine(data, "sub")).Code);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Corrupt_files_name_the_file_and_line_on_one_line()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-cli-");
        try
        {
            var data = DataCsv(dir);
            // A CSV given as the model: the message names the file and does not echo its contents.
            var (code, lines) = RunKiln(SmoothVerb.Build(), "smooth", "certify", "--data", data, "--model", data);
            Assert.Equal(Cli.Cli.BadUsage, code);
            var line = Last(lines);
            Assert.Contains($"--model {data}", line);
            Assert.DoesNotContain("0.5,", line);
            Assert.True(line.Length <= Cli.Cli.MaxMessage + "kiln: ".Length);

            string bad = Path.Combine(dir.FullName, "bad.csv");
            File.WriteAllLines(bad, ["a,b,y", "1,2,0", "1,oops,1"]);
            (code, lines) = RunKiln(SmoothVerb.Build(), "smooth", "train", "--data", bad, "--out", Path.Combine(dir.FullName, "m.json"));
            Assert.Equal(Cli.Cli.BadUsage, code);
            line = Last(lines);
            Assert.Contains($"{bad}: line 3, column 'b' (1): 'oops' is not a finite number", line);
            Assert.Contains("oops", line);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void An_unexpected_error_exits_1_with_one_line_and_KILN_TRACE_adds_the_stack_trace()
    {
        Command Failing()
        {
            var cmd = new Command("boom");
            cmd.SetAction(_ => ThrowDeep(3));
            return cmd;
        }
        var (code, lines) = RunKiln(Failing(), "boom");
        Assert.Equal(Cli.Cli.Failed, code);
        Assert.Equal("kiln: InvalidOperationException: state went bad across two lines (set KILN_TRACE=1 for the stack trace)", Assert.Single(lines));

        Environment.SetEnvironmentVariable("KILN_TRACE", "1");
        try { (code, lines) = RunKiln(Failing(), "boom"); }
        finally { Environment.SetEnvironmentVariable("KILN_TRACE", null); }
        Assert.Equal(Cli.Cli.Failed, code);
        Assert.Contains(lines, l => l.Contains(nameof(ThrowDeep)));
        Assert.StartsWith("kiln: InvalidOperationException", lines[^1]);
    }

    static int ThrowDeep(int n) => n == 0 ? throw new InvalidOperationException("state went bad\nacross two lines") : ThrowDeep(n - 1) + 1;

    [Fact]
    public void One_line_joins_lines_and_caps_the_length()
    {
        Assert.Equal("a b", Cli.Cli.OneLine("a\r\n  b\n"));
        var longest = Cli.Cli.OneLine(new string('x', 5000));
        Assert.Equal(Cli.Cli.MaxMessage, longest.Length);
        Assert.EndsWith("...", longest);
    }
}

/// <summary>`kiln`'s output conventions: redirected tables keep rows whole; --json runs write no files unless asked.</summary>
[Collection(nameof(SerialCollection))]
public class CliOutputTests
{
    [Fact]
    public void A_redirected_table_wider_than_80_columns_keeps_every_row_on_one_line()
    {
        var w = new StringWriter();
        var console = Cli.Cli.CreateConsole(w, interactive: false);
        var t = new Table();
        var cols = Enumerable.Range(0, 14).Select(i => $"column {i}").ToArray();
        t.AddColumns(cols);
        t.AddRow(cols.Select((_, i) => (123456.789 * (i + 1)).ToString("F3", System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        console.Write(t);
        var lines = w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines[0].Length > 80);
        var row = Assert.Single(lines, l => l.Contains("123456.789"));
        for (int i = 1; i <= 14; i++) Assert.Contains((123456.789 * i).ToString("F3", System.Globalization.CultureInfo.InvariantCulture), row);
    }

    [Fact]
    public void A_json_run_writes_no_plot_unless_plot_asks()
    {
        static int Reward(params string[] extra)
        {
            var root = new System.CommandLine.RootCommand("kiln");
            root.Subcommands.Add(RewardVerb.Build());
            var saved = Console.Out;
            Console.SetOut(new StringWriter());
            try { return Cli.Cli.Run(root, ["reward", "features", "--d", "4", "--n", "16", "--neurons", "4", "--beta1", "inf", "--seeds", "1", "--json", .. extra]); }
            finally { Console.SetOut(saved); }
        }
        string[] Plots() => Directory.GetFiles(Directory.GetCurrentDirectory(), "reward-features*.png");
        var before = Plots();
        Assert.Equal(0, Reward());
        Assert.Equal(before, Plots());
        var dir = Directory.CreateTempSubdirectory("kiln-cli-");
        try
        {
            Assert.Equal(0, Reward("--plot", Path.Combine(dir.FullName, "f")));
            Assert.NotEmpty(Directory.GetFiles(dir.FullName, "f-*.png"));
        }
        finally { dir.Delete(recursive: true); }
    }
}
