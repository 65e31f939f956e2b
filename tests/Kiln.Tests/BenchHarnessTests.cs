using Kiln.Bench;
using Xunit;

namespace Kiln.Tests;

/// <summary>The pure parts of the bench harness: peer output parsing, medians of rounds, ratios, the report's shape, option checks.</summary>
public class BenchHarnessTests
{
    static KilnResult K(double seconds, string workload = "sgemm_256", double amount = 0.0336, string unit = "GFLOP/s") => new(workload, seconds, amount / seconds, unit);
    static PeerResult P(string peer, double seconds, string workload = "sgemm_256", double amount = 0.0336, string unit = "GFLOP/s") => new(workload, peer, seconds, amount / seconds, unit);

    [Fact]
    public void Peer_json_lines_parse_and_log_lines_are_skipped()
    {
        var output = new StringReader("""
            OpenBLAS warning: precompiled NUM_THREADS exceeded
            {"workload": "sgemm_256", "peer": "numpy", "seconds": 0.0004, "rate": 83.9, "unit": "GFLOP/s"}
            {"workload": "sgemm_256", "peer": "torch", "seconds": 0.0005, "rate": 67.1, "unit": "GFLOP/s"}
            """);
        var results = PeerRunner.Parse(output);
        Assert.Equal([new PeerResult("sgemm_256", "numpy", 0.0004, 83.9, "GFLOP/s"), new PeerResult("sgemm_256", "torch", 0.0005, 67.1, "GFLOP/s")], results);
        Assert.Null(PeerRunner.ParseLine(""));
    }

    [Theory]
    [InlineData("""{"workload": "sgemm_256", "peer": "numpy", "seconds": 0.0004""", "sgemm_256")]
    [InlineData("""{"workload": "sgemm_256", "peer": "numpy", "rate": 83.9, "unit": "GFLOP/s"}""", "\"seconds\"")]
    [InlineData("""{"workload": "sgemm_256", "peer": "numpy", "seconds": "fast", "rate": 83.9, "unit": "GFLOP/s"}""", "fast")]
    [InlineData("""{"workload": null, "peer": "numpy", "seconds": 0.1, "rate": 83.9, "unit": "GFLOP/s"}""", "\"workload\" is null")]
    public void Malformed_peer_lines_throw_InvalidDataException_quoting_the_line(string line, string fragment)
    {
        var e = Assert.Throws<InvalidDataException>(() => PeerRunner.ParseLine(line));
        Assert.Contains(fragment, e.Message);
        Assert.Contains(line, e.Message);
        Assert.Throws<InvalidDataException>(() => PeerRunner.Parse(new StringReader("log line\n" + line + "\n")));
    }

    [Fact]
    public void Median_round_is_the_middle_one_and_the_upper_middle_for_an_even_count()
    {
        Assert.Equal(3.0, Timing.MedianRound([5.0, 1.0, 3.0, 9.0, 2.0], s => s));
        Assert.Equal(3.0, Timing.MedianRound([4.0, 1.0, 3.0, 2.0], s => s));
        Assert.Equal(7.0, Timing.MedianRound([7.0], s => s));
        Assert.Throws<ArgumentException>(() => Timing.MedianRound(Array.Empty<double>(), s => s));
    }

    [Fact]
    public void A_row_takes_each_sides_median_round_and_the_ratio_to_the_fastest_peer()
    {
        // Kiln's rounds 2, 1, 4 ms: median 2 ms. numpy 3, 8, 4 ms: median 4 ms; torch 3, 3.5, 2.5 ms: median 3 ms (fastest).
        var row = BenchRow.FromRounds([K(2e-3), K(1e-3), K(4e-3)],
            [P("numpy", 3e-3), P("torch", 3e-3), P("numpy", 8e-3), P("torch", 3.5e-3), P("numpy", 4e-3), P("torch", 2.5e-3)],
            new OneCoreResult(100, 80), peakGflops: 200);
        Assert.Equal(2e-3, row.Kiln.Seconds);
        Assert.Equal(["numpy", "torch"], row.Peers.Select(p => p.Peer));
        Assert.Equal([4e-3, 3e-3], row.Peers.Select(p => p.Seconds));
        Assert.Equal("torch", row.Peer!.Peer);
        Assert.Equal(1.5, row.Ratio!.Value, 12);
        Assert.Equal(0.0336 / 2e-3 / 200, row.PeakFraction!.Value, 12);
        Assert.Equal(1.25, row.OneCore!.Ratio!.Value, 12);
    }

    [Fact]
    public void A_row_without_a_peer_in_its_unit_has_no_ratio_and_only_GFLOPs_have_a_peak_fraction()
    {
        var row = BenchRow.FromRounds([K(1e-3, "add_16M", 0.2, "GB/s")], [P("torch", 1e-3, "add_16M", 256, "samples/s")], peakGflops: 200);
        Assert.Null(row.Peer);
        Assert.Null(row.Ratio);
        Assert.Null(row.PeakFraction);
        Assert.Null(new OneCoreResult(100, null).Ratio);
        Assert.Throws<ArgumentException>(() => BenchRow.FromRounds([], []));
        Assert.Throws<ArgumentException>(() => BenchRow.FromRounds([K(1e-3)], [P("numpy", 1e-3, "sgemm_512")]));
    }

    static BenchReport Report() => new(
        [
            BenchRow.FromRounds([K(0.5e-3)], [P("numpy", 1e-3), P("torch", 0.8e-3)], new OneCoreResult(100, 90), 200),
            BenchRow.FromRounds([K(10e-3, "softmax_4096x4096", 0.134, "GB/s")], [P("torch", 25e-3, "softmax_4096x4096", 0.134, "GB/s")]),
        ],
        new BenchMachine(2, "Test CPU", true, "10.0.0"), 100, 3, "1.00", "2.00", new DateTime(2026, 11, 23, 19, 36, 0));

    [Fact]
    public void Markdown_has_the_header_both_tables_and_a_row_per_workload()
    {
        var lines = Report().ToMarkdown("kiln bench sgemm_256 softmax_4096x4096").Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal("## Kiln vs peers on peer_bench.py's workloads (`kiln bench`)", lines[0]);
        Assert.Contains("- Machine: 2 logical CPUs, Test CPU; Vector512 yes; .NET 10.0.0; load average 1.00 before, 2.00 after", lines);
        Assert.Contains("- Date: 2026-11-23 19:36", lines);
        Assert.Contains(lines, l => l.StartsWith("- Command: `kiln bench sgemm_256 softmax_4096x4096` (Release build)"));
        Assert.Contains(lines, l => l.StartsWith("- Peak: 200.0 GFLOP/s single precision = 2 cores x 100.0 GFLOP per CPU-second"));
        Assert.Contains(lines, l => l.StartsWith("- Timing: median of 7 runs after warm-up, for Kiln and peers alike, in 3 alternating rounds"));
        Assert.Contains("| workload | Kiln | numpy | torch | ratio | Kiln % of peak |", lines);
        Assert.Contains("| sgemm_256 | 0.50 ms, 67.2 GFLOP/s | 1.00 ms, 33.6 | 0.80 ms, 42.0 | 1.60 | 34% |", lines);
        Assert.Contains("| softmax_4096x4096 | 10.00 ms, 13.4 GB/s | - | 25.00 ms, 5.4 | 2.50 |  |", lines);
        Assert.Contains("| workload | Kiln 1 core | OpenBLAS 1 core | ratio |", lines);
        Assert.Contains("| sgemm_256 | 100.0 (100% of a core's peak) | 90.0 | 1.11 |", lines);
        Assert.Equal("![ratios](ratios.png)", lines.Last(l => l.Length > 0));
    }

    [Fact]
    public void The_section_replaces_its_old_self_and_keeps_the_rest_of_the_file()
    {
        string first = BenchReport.SpliceSection("# Benchmark results\n\nmine\n", "old\n");
        Assert.StartsWith("# Benchmark results\n\nmine\n\n" + BenchReport.SectionBegin + "\nold\n" + BenchReport.SectionEnd + "\n", first);
        string second = BenchReport.SpliceSection(first + "after\n", "new\n");
        Assert.Equal("# Benchmark results\n\nmine\n\n" + BenchReport.SectionBegin + "\nnew\n" + BenchReport.SectionEnd + "\nafter\n", second);
        Assert.StartsWith("# Benchmark results\n\n" + BenchReport.SectionBegin, BenchReport.SpliceSection(null, "x"));

        var dir = Directory.CreateTempSubdirectory("kiln-bench-");
        try
        {
            var md = Path.Combine(dir.FullName, "sub", "RESULTS.md");
            Report().WriteMarkdown(md, "kiln bench");
            Report().WriteMarkdown(md, "kiln bench");
            string text = File.ReadAllText(md);
            Assert.Equal(1, text.Split(BenchReport.SectionBegin).Length - 1);
            Assert.EndsWith(BenchReport.SectionEnd + "\n", text);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Unknown_workloads_and_bad_options_throw_naming_the_argument()
    {
        var e = Assert.Throws<ArgumentException>(() => Workloads.Get("sgemm_257"));
        Assert.Contains("sgemm_257", e.Message);
        Assert.Contains("sgemm_256", e.Message);
        var o = Assert.Throws<ArgumentException>(() => new BenchOptions { Workloads = ["add_16M", "nope"] });
        Assert.Equal("Workloads", o.ParamName);
        Assert.Contains("nope", o.Message);
        Assert.DoesNotContain("add_16M,", o.Message.Split("known:")[0]);
        Assert.Equal("Rounds", Assert.Throws<ArgumentOutOfRangeException>(() => new BenchOptions { Rounds = 0 }).ParamName);
        Assert.Equal("CorePeakGflops", Assert.Throws<ArgumentOutOfRangeException>(() => new BenchOptions { CorePeakGflops = double.NaN }).ParamName);
        Assert.Throws<FileNotFoundException>(() => new BenchOptions { PeerBench = "/nonexistent/peer_bench.py" });
        Assert.Equal(["sgemm_512", "add_16M"], Workloads.Select(["add_16M", "sgemm_512"]).Select(w => w.Name));
        Assert.Equal(Workloads.Names, Workloads.Select([]).Select(w => w.Name));
    }
}
