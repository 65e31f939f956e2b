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
        Assert.Equal(1.5, row.Ratio!.Value, 1e-12);
        Assert.Equal(0.0336 / 2e-3 / 200, row.PeakFraction!.Value, 1e-12);
        Assert.Equal(1.25, row.OneCore!.Ratio!.Value, 1e-12);
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

    [Fact]
    public void A_decode_row_reports_its_bandwidth_bound_and_fraction_in_markdown_and_json()
    {
        // 16 tokens in 0.5 s (32 tokens/s) against a bound of 40 tokens/s (20 GB/s copy, 0.5 GB a token): 80%.
        var row = BenchRow.FromRounds([K(0.5, "decode_llama_111m_bf16", 16, "tokens/s")], []) with { BoundRate = 20e9 / 0.5e9, CopyGBps = 20 };
        Assert.Equal(0.8, row.BoundFraction!.Value, 1e-12);
        Assert.Null(BenchRow.FromRounds([K(0.5, "decode_llama_111m_bf16", 16, "tokens/s")], []).BoundFraction);
        var report = new BenchReport([row], Report().Machine, 100, 1, "0", "0", DateTime.Now);
        var line = Assert.Single(report.JsonLines());
        Assert.Equal((40.0, 0.8, 20.0), ((double)line["bound_rate"]!, Math.Round((double)line["kiln_bound_fraction"]!, 12), (double)line["copy_gbps"]!));
        var md = report.ToMarkdown("kiln bench decode_llama_111m_bf16").Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Contains(md, l => l.StartsWith("- Bandwidth bound (decode and matrix-vector rows): the weight bytes a token (or a GB of weights) reads over the row's copy bandwidth"));
        Assert.Contains("| decode_llama_111m_bf16 | 500.00 ms, 32.0 tokens/s | - | - | - | - | - | - | - | - | - | - | 80% of bound (40.0 tokens/s at 20.0 GB/s) |", md);
        Assert.DoesNotContain(Report().ToMarkdown("kiln bench").Split('\n'), l => l.StartsWith("- Bandwidth bound"));
    }

    [Fact]
    public void A_GFLOPs_row_with_its_own_peak_probes_states_both_beside_its_fractions()
    {
        // 33.6 GFLOP/s on 2 cores, which together ran the FMA loop at 40 GFLOP/s of wall clock during the row (84%), and
        // one of which ran it at 21 per CPU-second (80% of 2 x 21).
        var row = BenchRow.FromRounds([K(1e-3)], [], peakGflops: 40) with { CorePeakGflops = 21, CoresPeakGflops = 40 };
        var report = new BenchReport([row], Report().Machine, 100, 1, "0", "0", DateTime.Now);
        var line = Assert.Single(report.JsonLines());
        Assert.Equal((0.84, 40.0, 21.0, 0.8), (Math.Round((double)line["kiln_peak_fraction"]!, 12), (double)line["cores_peak_gflops"]!,
            (double)line["core_peak_gflops"]!, Math.Round((double)line["kiln_core_peak_fraction"]!, 12)));
        Assert.Contains(report.ToMarkdown("kiln bench sgemm_512").Split('\n'), l => l.TrimEnd('\r').EndsWith("| 84% (2 cores at once 40.0; 80% of 2 x core peak 21.0) |"));
    }

    [Fact]
    public void Decode_workloads_count_every_weight_a_token_reads()
    {
        // d 1024, 8 layers of four 1024^2 projections and three 1024 x 2816 MLP matrices, an untied 8192 x 1024 head; norms
        // (two per layer and the final one) stay float32.
        double weights = 8 * (4.0 * 1024 * 1024 + 3.0 * 1024 * 2816) + 8192.0 * 1024, norms = 4 * (8 * 2 * 1024 + 1024);
        Assert.Equal(4 * weights + norms, Workloads.TokenBytes(Workloads.DecodeConfig, DType.Float32));
        Assert.Equal(2 * weights + norms, Workloads.TokenBytes(Workloads.DecodeConfig, DType.BFloat16));
        // 1B-parameter class: 2.2 GB of bf16 weights a token. A tied head is read as the half embedding.
        Assert.InRange(Workloads.TokenBytes(Workloads.Decode1BConfig, DType.BFloat16), 2.1e9, 2.3e9);
        var tied = Workloads.DecodeConfig with { TieWordEmbeddings = true };
        Assert.Equal(2 * weights + norms, Workloads.TokenBytes(tied, DType.BFloat16));
        foreach (var name in new[] { "decode_llama_111m_f32", "decode_llama_111m_bf16", "decode_llama_1b_bf16", "decode_looping_tiny" })
            Assert.NotNull(Workloads.All.Single(w => w.Name == name).StreamedBytes);
        // A matrix-vector row's unit is a GB of weights.
        foreach (var name in new[] { "matvec_4096x4096", "linear_4096x11008", "linear_bf16_4096x4096" })
            Assert.Equal(1e9, Workloads.All.Single(w => w.Name == name).StreamedBytes!());
        Assert.Null(Workloads.All.Single(w => w.Name == "sgemm_256").StreamedBytes);
    }

    static BenchReport Report() => new(
        [
            BenchRow.FromRounds([K(0.5e-3)], [P(TorchPeer.DefaultName, 1e-3), P(TorchPeer.KernelName, 0.8e-3)], new OneCoreResult(100, 90), 200)
                with { RelativeErrors = new Dictionary<string, double> { [TorchPeer.KernelName] = 3e-7 } },
            BenchRow.FromRounds([K(10e-3, "softmax_4096x4096", 0.134, "GB/s")], [P("torch", 25e-3, "softmax_4096x4096", 0.134, "GB/s"), P(OnnxPeer.PeerName, 20e-3, "softmax_4096x4096", 0.134, "GB/s")])
                with { RelativeErrors = new Dictionary<string, double> { [OnnxPeer.PeerName] = 2e-7 } },
        ],
        new BenchMachine(2, "Test CPU", true, "10.0.0", ["fma", "avx512f"], 2, "L1d 48K, L2 2048K"), 100, 3, "1.00", "2.00", new DateTime(2026, 11, 23, 19, 36, 0))
    {
        PeerInfos = [new(TorchPeer.KernelName, "libtorch 2.10.0 (TorchSharp 0.107.0)", "mkl 2024.2, CPU capability AVX512", 2), new(OnnxPeer.PeerName, "ONNX Runtime 1.32.0", "MLAS", 2)],
        Skipped = ["numpy: linked to the reference BLAS"],
    };

    [Fact]
    public void Markdown_has_the_header_both_tables_and_a_row_per_workload()
    {
        var lines = Report().ToMarkdown("kiln bench sgemm_256 softmax_4096x4096").Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal("## Kiln vs peers (`kiln bench`)", lines[0]);
        Assert.Contains("- Machine: 2 logical CPUs, Test CPU; Vector512 yes; .NET 10.0.0; load average 1.00 before, 2.00 after", lines);
        Assert.Contains("- CPU: Test CPU, 2 logical CPUs, 2 threads used; fma avx512f; L1d 48K, L2 2048K", lines);
        Assert.Contains("- Date: 2026-11-23 19:36", lines);
        Assert.Contains(lines, l => l.StartsWith("- Command: `kiln bench sgemm_256 softmax_4096x4096` (Release build)"));
        Assert.Contains("- Peer libtorch: libtorch 2.10.0 (TorchSharp 0.107.0); mkl 2024.2, CPU capability AVX512; 2 threads", lines);
        Assert.Contains("- Skipped: numpy: linked to the reference BLAS", lines);
        Assert.Contains(lines, l => l.StartsWith("- Peak: 200.0 GFLOP/s single precision = 2 cores x 100.0 GFLOP per CPU-second"));
        Assert.Contains(lines, l => l.StartsWith("- Timing: median of 7 runs after warm-up, for Kiln and peers alike, in 3 alternating rounds"));
        Assert.Contains("- Peer onnxruntime: ONNX Runtime 1.32.0; MLAS; 2 threads", lines);
        Assert.Contains("| workload | Kiln | libtorch | ratio (kernel) | libtorch default | ratio (default) | onnxruntime | ratio (ORT) | ORT rel. error | torch 1.13 | numpy | rel. error | Kiln % of peak |", lines);
        Assert.Contains("| sgemm_256 | 0.50 ms, 67.2 GFLOP/s | 0.80 ms, 42.0 | 1.60 | 1.00 ms, 33.6 | 2.00 | - | - | - | - | - | 3.0e-7 | 34% |", lines);
        Assert.Contains("| softmax_4096x4096 | 10.00 ms, 13.4 GB/s | - | - | - | - | 20.00 ms, 6.7 | 2.00 | 2.0e-7 | 25.00 ms, 5.4 | - | - |  |", lines);
        Assert.Contains("| workload | Kiln 1 core | OpenBLAS 1 core | ratio |", lines);
        Assert.Contains("| sgemm_256 | 100.0 (100% of a core's peak) | 90.0 | 1.11 |", lines);
        Assert.Equal("![ratios](ratios.png)", lines.Last(l => l.Length > 0));
    }

    [Fact]
    public void Json_lines_give_one_line_per_peer_with_the_contract_fields_and_a_null_peer_line_without_peers()
    {
        var lines = Report().JsonLines().ToList();
        Assert.Equal(3, lines.Count);
        var lt = lines[0];
        foreach (var key in new[] { "workload", "unit", "kiln_rate", "peer", "peer_version", "peer_rate", "ratio", "cpu" }) Assert.True(lt.ContainsKey(key), key);
        Assert.Equal(("sgemm_256", "GFLOP/s", TorchPeer.KernelName, "libtorch 2.10.0 (TorchSharp 0.107.0)"), ((string)lt["workload"]!, (string)lt["unit"]!, (string)lt["peer"]!, (string)lt["peer_version"]!));
        Assert.Equal(0.0336 / 0.5e-3, (double)lt["kiln_rate"]!, 1e-9);
        Assert.Equal(0.0336 / 0.8e-3, (double)lt["peer_rate"]!, 1e-9);
        Assert.Equal(1.6, (double)lt["ratio"]!, 1e-12);
        Assert.Equal(2.0, (double)lt["ratio_default"]!, 1e-12);
        Assert.Equal(3e-7, (double)lt["rel_error"]!);
        Assert.Equal("Test CPU", ((IReadOnlyDictionary<string, object>)lt["cpu"]!)["model"]);
        // torch 1.13 reports the softmax, but no libtorch and no default line for it: one line, torch's; then no line has
        // libtorch-default as its peer (its rate is folded into libtorch's line).
        Assert.Equal("torch", lines[1]["peer"]);
        Assert.DoesNotContain(lines, l => (string?)l["peer"] == TorchPeer.DefaultName);
        // ONNX Runtime's line carries its version and its own rel. error.
        Assert.Equal((OnnxPeer.PeerName, "ONNX Runtime 1.32.0", 2e-7, 2.0), ((string)lines[2]["peer"]!, (string)lines[2]["peer_version"]!, (double)lines[2]["rel_error"]!, Math.Round((double)lines[2]["ratio"]!, 12)));

        var bare = new BenchReport([BenchRow.FromRounds([K(1e-3, "sum_16M", 0.067, "GB/s")], [])], Report().Machine, 100, 1, "0", "0", DateTime.Now) { Skipped = ["libtorch: not asked for"] };
        var only = Assert.Single(bare.JsonLines());
        Assert.Null(only["peer"]);
        Assert.Null(only["ratio"]);
        Assert.Equal(["libtorch: not asked for"], (IReadOnlyList<string>)only["skipped"]!);
    }

    [Theory]
    [InlineData("""{"error": "libtorch did not load: version `GLIBCXX_3.4.32' not found"}""", 2, "libtorch: libtorch did not load: version `GLIBCXX_3.4.32' not found")]
    [InlineData("""{"peer": "libtorch", "version": "2.10.0.0", "torchsharp": "0.107.0", "threads": 4, "config": ""}""", 2, "libtorch: runs 4 threads, more than Kiln's 2")]
    [InlineData(null, 2, "libtorch: the runner exited without a word")]
    [InlineData("not json", 2, "libtorch: unreadable hello")]
    public void A_libtorch_runner_that_cannot_load_or_runs_more_threads_is_refused_with_one_line(string? hello, int threads, string reason)
    {
        var (info, why) = TorchPeer.ParseHello(hello, TorchPeer.KernelName, threads);
        Assert.Null(info);
        Assert.StartsWith(reason, why);
        Assert.DoesNotContain('\n', why!);
    }

    [Fact]
    public void The_libtorch_hello_gives_version_threads_and_gemm_backend()
    {
        const string config = "PyTorch built with:\n  - GCC 9.4\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications\n"
            + "  - Intel(R) MKL-DNN v3.7.1 (Git Hash 8d26)\n  - CPU capability usage: AVX512\n  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, USE_MKLDNN=ON, \n";
        var hello = System.Text.Json.JsonSerializer.Serialize(new { peer = "libtorch", version = "2.10.0.0", torchsharp = "0.107.0", threads = 2, config });
        var (info, why) = TorchPeer.ParseHello(hello, TorchPeer.KernelName, 2);
        Assert.Null(why);
        Assert.Equal(new PeerInfo(TorchPeer.KernelName, "libtorch 2.10.0 (TorchSharp 0.107.0)", "mkl 2024.2, oneDNN v3.7.1, CPU capability AVX512", 2), info);
    }

    [Theory]
    [InlineData("""{"error": "ONNX Runtime did not load: libonnxruntime.so: cannot open shared object file"}""", 2, "onnxruntime: ONNX Runtime did not load: libonnxruntime.so")]
    [InlineData("""{"peer": "onnxruntime", "version": "1.32.0", "threads": 4, "config": "MLAS"}""", 2, "onnxruntime: runs 4 threads, more than Kiln's 2")]
    [InlineData(null, 2, "onnxruntime: the runner exited without a word")]
    [InlineData("not json", 2, "onnxruntime: unreadable hello")]
    public void An_onnxruntime_runner_that_cannot_load_or_runs_more_threads_is_refused_with_one_line(string? hello, int threads, string reason)
    {
        var (info, why) = OnnxPeer.ParseHello(hello, threads);
        Assert.Null(info);
        Assert.StartsWith(reason, why);
        Assert.DoesNotContain('\n', why!);
    }

    [Fact]
    public void The_onnxruntime_hello_gives_version_threads_and_backend_and_a_missing_runner_is_skipped()
    {
        var (info, why) = OnnxPeer.ParseHello("""{"peer": "onnxruntime", "version": "1.32.0", "threads": 2, "config": "MLAS, CPUExecutionProvider"}""", 2);
        Assert.Null(why);
        Assert.Equal(new PeerInfo(OnnxPeer.PeerName, "ONNX Runtime 1.32.0", "MLAS, CPUExecutionProvider", 2), info);
        var (peer, reason) = OnnxPeer.Open(null, 2);
        Assert.Null(peer);
        Assert.Equal("onnxruntime: bench/Kiln.Bench.Onnx is not built (run bench/setup-peers.sh)", reason);
    }

    // The live runner where bench/setup-peers.sh built it (CI does not download ONNX Runtime, so it skips there): its graphs
    // on small inputs of each kind it has, against Kiln's ops. Workload names select the graph; the shapes are the inputs'.
    [SkippableFact]
    public void The_onnxruntime_runner_when_built_matches_kiln_on_its_graphs()
    {
        var dll = OnnxPeer.FindRunner(BenchReport.DefaultFolder(AppContext.BaseDirectory));
        Skip.If(dll is null, "bench/Kiln.Bench.Onnx is not built (bench/setup-peers.sh)");
        var (peer, reason) = OnnxPeer.Open(dll, 1);
        Assert.True(peer is not null, reason);
        using var _ = peer;
        var g = new Generator(3);
        var (a, b, w, bias, shift) = (Tensor.Randn([5, 7], g), Tensor.Randn([7, 3], g), Tensor.Randn([3, 7], g), Tensor.Randn([7], g), Tensor.Randn([7], g));
        var (q, k, v) = (Tensor.Randn([1, 8, 9, 64], g), Tensor.Randn([1, 8, 9, 64], g), Tensor.Randn([1, 8, 9, 64], g));
        var cases = new (string Workload, (string, Tensor)[] Inputs, Tensor Kiln)[]
        {
            ("sgemm_256", [("a", a), ("b", b)], a.MatMul(b)),
            ("matvec_4096x4096", [("a", a), ("b", b)], a.MatMul(b)),
            ("linear_4096x4096", [("x", a), ("w", w)], Tensor.Linear(a, w)),
            ("softmax_4096x4096", [("x", a)], a.Softmax(-1)),
            ("layer_norm_8192x1024", [("x", a), ("w", bias), ("b", shift)], a.LayerNorm(bias, shift)),
            ("gelu_16M", [("x", a)], a.Gelu()),
            ("causal_attention_h8_t512_d64", [("q", q), ("k", k), ("v", v)], Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8)),
        };
        foreach (var (workload, inputs, kiln) in cases)
        {
            var dir = Directory.CreateTempSubdirectory("kiln-onnx-test-");
            try
            {
                ChildPeer.WriteInputs(dir.FullName, inputs);
                var theirs = peer!.Prepare(workload, dir.FullName);
                Assert.True(theirs is not null, workload);
                Assert.True(ChildPeer.RelativeError(kiln.ToArray<float>(), theirs!) < 1e-5, $"{workload}: rel. error {ChildPeer.RelativeError(kiln.ToArray<float>(), theirs!)}");
            }
            finally { dir.Delete(recursive: true); }
        }
        // A workload it has no graph for is skipped, not failed.
        var none = Directory.CreateTempSubdirectory("kiln-onnx-test-");
        try
        {
            ChildPeer.WriteInputs(none.FullName, [("x", a)]);
            Assert.Null(peer!.Prepare("silu_16M", none.FullName));
        }
        finally { none.Delete(recursive: true); }
    }

    static string Probe(string blas, int numpyThreads = 2, int torchThreads = 2) => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["numpy"] = "1.24.2", ["numpy_blas"] = blas.Split(';'), ["numpy_threads"] = numpyThreads, ["torch"] = "1.13.0a0", ["torch_blas"] = "generic",
        ["torch_capability"] = "AVX2", ["torch_threads"] = torchThreads,
    });

    [Fact]
    public void Numpy_on_the_reference_blas_or_on_more_threads_than_Kiln_is_refused()
    {
        var (ok, refused) = PeerRunner.Classify(Probe("/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3;/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"), 2);
        Assert.Empty(refused);
        Assert.Equal(new PeerInfo("numpy", "numpy 1.24.2", "libopenblasp-r0.3.21.so", 2), ok[0]);
        Assert.Equal(new PeerInfo("torch", "PyTorch 1.13.0a0", "BLAS_INFO=generic, CPU capability AVX2", 2), ok[1]);

        (ok, refused) = PeerRunner.Classify(Probe("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"), 2);
        Assert.Equal(["torch"], ok.Select(p => p.Peer));
        Assert.StartsWith("numpy: linked to the reference BLAS /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", Assert.Single(refused));

        (ok, refused) = PeerRunner.Classify(Probe("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so", numpyThreads: 8, torchThreads: 4), 2);
        Assert.Empty(ok);
        Assert.Equal(["numpy: OpenBLAS runs 8 threads, more than Kiln's 2", "torch: runs 4 threads, more than Kiln's 2"], refused);
        Assert.Throws<InvalidDataException>(() => PeerRunner.Classify("{}", 2));
    }

    [Fact]
    public void Inputs_are_written_as_the_runner_reads_them_and_the_relative_error_is_normwise()
    {
        var dir = Directory.CreateTempSubdirectory("kiln-bench-");
        try
        {
            ChildPeer.WriteInputs(dir.FullName, [("a", Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, new Shape(2, 3))), ("y", Tensor.FromArray(new long[] { 7, -1 }))]);
            Assert.Equal(["a float32 2,3", "y int64 2"], File.ReadAllLines(Path.Combine(dir.FullName, "inputs.txt")));
            Assert.Equal(24, new FileInfo(Path.Combine(dir.FullName, "a.bin")).Length);
            Assert.Equal(new long[] { 7, -1 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(File.ReadAllBytes(Path.Combine(dir.FullName, "y.bin"))).ToArray());
            Assert.Throws<NotSupportedException>(() => ChildPeer.WriteInputs(dir.FullName, [("d", Tensor.FromArray(new double[] { 1 }))]));
        }
        finally { dir.Delete(recursive: true); }
        Assert.Equal(0.0, ChildPeer.RelativeError([1, 2], [1, 2]));
        Assert.Equal(0.16, ChildPeer.RelativeError([3, 4.8f], [3, 4]), 1e-6);
        Assert.Equal(double.PositiveInfinity, ChildPeer.RelativeError([1], [1, 2]));
    }

    [Fact]
    public void Every_workload_name_is_listed_in_the_bench_readme_and_every_libtorch_workload_has_peer_inputs()
    {
        string readme = File.ReadAllText(Path.Combine(BenchReport.DefaultFolder(AppContext.BaseDirectory), "README.md"));
        foreach (var name in Workloads.Names) Assert.Contains($"`{name}`", readme);
        foreach (var name in new[] { "sgemm_256", "matvec_4096x11008", "linear_4096x4096", "gelu_16M", "silu_16M", "copy_16M", "layer_norm_8192x1024" })
        {
            using var scope = Tensor.Scope();
            Assert.NotEmpty(Workloads.Get(name).Prepare(Device.Cpu).Inputs);
        }
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
        Assert.Equal("threads", Assert.Throws<ArgumentOutOfRangeException>(() => TorchPeer.Open(null, 0, kernel: true)).ParamName);
        Assert.Equal((null, "libtorch: bench/Kiln.Bench.Torch is not built (run bench/setup-peers.sh)"), TorchPeer.Open("/nonexistent/Kiln.Bench.Torch.dll", 2, kernel: true));
        Assert.Equal(["sgemm_512", "add_16M"], Workloads.Select(["add_16M", "sgemm_512"]).Select(w => w.Name));
        Assert.Equal(Workloads.Names, Workloads.Select([]).Select(w => w.Name));
    }
}
