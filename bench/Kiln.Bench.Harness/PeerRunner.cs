using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Kiln.Bench;

/// <summary>A peer's timing of one workload, as peer_bench.py --json prints it.</summary>
/// <param name="Workload">The workload's name.</param>
/// <param name="Peer">The peer: "numpy" or "torch".</param>
/// <param name="Seconds">Median seconds per run.</param>
/// <param name="Rate">Work per second in <paramref name="Unit"/>.</param>
/// <param name="Unit">The rate's unit ("GFLOP/s", "GB/s", "samples/s").</param>
public sealed record PeerResult(string Workload, string Peer, double Seconds, double Rate, string Unit);

/// <summary>
/// Runs ../shared/peers/peer_bench.py (numpy/OpenBLAS and PyTorch CPU) with /usr/bin/python3, one workload per process,
/// and reads its --json lines; also numpy's SGEMM on one thread timed by CPU time.
/// </summary>
public sealed class PeerRunner
{
    const string Python = "/usr/bin/python3";

    // peer_bench.py plus the odd GEMM shapes and the conv2d workloads it lacks, timed the same way (its median_seconds; numpy and torch).
    const string PeerScript = """
        import sys
        sys.path.insert(0, sys.argv.pop(1))
        import peer_bench as pb
        import numpy as np, torch
        def sgemm_mnk(m, n, k):
            def run():
                a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                flops = 2.0 * m * n * k
                return [("numpy", pb.median_seconds(lambda: a @ b), flops / 1e9, "GFLOP/s"),
                        ("torch", pb.median_seconds(lambda: ta @ tb), flops / 1e9, "GFLOP/s")]
            return run
        def conv2d(k, stride, groups, backward, n=8, c=64, hw=56):
            def run():
                F = torch.nn.functional
                torch.manual_seed(0)
                pad, out = k // 2, (hw + 2 * (k // 2) - k) // stride + 1
                x, w, b = torch.randn(n, c, hw, hw), torch.randn(c, c // groups, k, k), torch.randn(c)
                flops = 2.0 * n * c * out * out * (c // groups) * k * k * (3 if backward else 1)
                if not backward:
                    with torch.no_grad():
                        return [("torch", pb.median_seconds(lambda: F.conv2d(x, w, b, stride, pad, 1, groups)), flops / 1e9, "GFLOP/s")]
                for t in (x, w, b): t.requires_grad_()
                gy = torch.randn(n, c, out, out)
                def step():
                    x.grad = w.grad = b.grad = None
                    F.conv2d(x, w, b, stride, pad, 1, groups).backward(gy)
                return [("torch", pb.median_seconds(step), flops / 1e9, "GFLOP/s")]
            return run
        pb.WORKLOADS.setdefault("sgemm_1000", pb.sgemm(1000))
        pb.WORKLOADS.setdefault("sgemm_4097x64", sgemm_mnk(4097, 64, 4097))
        for name, k, stride, groups in [("3x3", 3, 1, 1), ("1x1", 1, 1, 1), ("3x3s2", 3, 2, 1), ("dw3x3", 3, 1, 64)]:
            for backward in (False, True):
                pb.WORKLOADS.setdefault(f"conv2d_b8_c64_56_{name}{'_fwdbwd' if backward else ''}", conv2d(k, stride, groups, backward))
        # `kiln bench` runs workloads that peer_bench.py does not have (libtorch's): nothing to print for those.
        if all(a in pb.WORKLOADS for a in sys.argv[1:] if not a.startswith("--") and not a.isdigit()):
            pb.main(sys.argv[1:])
        """;

    // What the peers are: numpy's version and the BLAS it loaded (the library mapped into the process after a product,
    // resolved through Debian's alternatives), the threads OpenBLAS reports, and torch's version, BLAS and threads.
    const string ProbeScript = """
        import ctypes, json, os, re, sys
        sys.path.insert(0, sys.argv[1])
        import peer_bench  # sets OPENBLAS_CORETYPE as the timed runs have it
        import numpy as np, torch
        a = np.ones((64, 64), np.float32); a @ a
        libs = sorted({os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps") if ".so" in l})
        blas = [p for p in libs if any(k in os.path.basename(p) for k in ("blas", "mkl", "blis", "atlas"))]
        # The threads OpenBLAS itself reports; other BLAS libraries: what the environment asks for.
        openblas = [p for p in blas if "openblas" in os.path.basename(p)]
        threads = ctypes.CDLL(openblas[0]).openblas_get_num_threads() if openblas else int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count()))
        torch.set_num_threads(int(sys.argv[2]))
        cfg = torch.__config__.show()
        print(json.dumps({"numpy": np.__version__, "numpy_blas": blas, "numpy_threads": threads,
                          "torch": torch.__version__, "torch_blas": (re.findall(r"BLAS_INFO=([^,\s]+)", cfg) or ["unknown"])[0],
                          "torch_capability": (re.findall(r"CPU capability usage: (\S+)", cfg) or ["unknown"])[0],
                          "torch_threads": torch.get_num_threads()}))
        """;

    // numpy (OpenBLAS, its SkylakeX kernels where AVX-512 exists) on one thread, timed by CPU time like Kiln's side.
    const string OneCoreScript = """
        import os, sys, time
        if "OPENBLAS_CORETYPE" not in os.environ and "avx512f" in open("/proc/cpuinfo").read():
            os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        import numpy as np
        m, n, k = map(int, sys.argv[1:4])
        a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
        for _ in range(3): a @ b
        reps = max(5, int(float(sys.argv[4]) / (2 * m * n * k)))
        t = time.thread_time()
        for _ in range(reps): a @ b
        print(2 * m * n * k * reps / (time.thread_time() - t) / 1e9)
        """;

    readonly Action<string>? _warn;
    readonly HashSet<string> _accepted = [];

    /// <summary>
    /// A runner of the peer_bench.py at <paramref name="peerBench"/> on <paramref name="threads"/> threads (OpenBLAS's and
    /// torch's); probes the peers (<see cref="Peers"/>) and refuses, with a one-line reason each (<see cref="Refused"/>),
    /// numpy on a reference BLAS and any peer that runs more threads than <paramref name="threads"/>.
    /// </summary>
    /// <param name="peerBench">Path of peer_bench.py.</param>
    /// <param name="threads">Kiln's threads, which the peers get too.</param>
    /// <param name="warn">Told, in one line, when a peer process fails (its results are then missing); null: not told.</param>
    /// <exception cref="ArgumentException"><paramref name="peerBench"/> is null or empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is less than 1.</exception>
    /// <exception cref="FileNotFoundException"><paramref name="peerBench"/> or /usr/bin/python3 does not exist.</exception>
    public PeerRunner(string peerBench, int threads, Action<string>? warn = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(peerBench);
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"bench: threads must be at least 1, not {threads}");
        if (!File.Exists(peerBench)) throw new FileNotFoundException($"bench: peer script {peerBench} does not exist", peerBench);
        if (!File.Exists(Python)) throw new FileNotFoundException($"bench: {Python} not found (the peers need python3-numpy, python3-torch and libopenblas0-pthread)", Python);
        PeerBench = Path.GetFullPath(peerBench);
        Threads = threads;
        _warn = warn;
        (Peers, Refused) = Probe();
        foreach (var p in Peers) _accepted.Add(p.Peer);
    }

    /// <summary>Threads the peers run (Kiln's).</summary>
    public int Threads { get; }

    /// <summary>The accepted peers with their version, BLAS and threads.</summary>
    public IReadOnlyList<PeerInfo> Peers { get; }

    /// <summary>One line per refused peer: which and why.</summary>
    public IReadOnlyList<string> Refused { get; }

    (IReadOnlyList<PeerInfo>, IReadOnlyList<string>) Probe()
    {
        using var proc = Start(ProbeScript, Path.GetDirectoryName(PeerBench)!, Threads.ToString(CultureInfo.InvariantCulture));
        var err = proc.StandardError.ReadToEndAsync();
        string output = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        if (proc.ExitCode != 0) return ([], [$"numpy, torch: the probe failed: {err.Result.Trim().Split('\n')[^1]}"]);
        return Classify(output.Trim().Split('\n')[^1], Threads);
    }

    /// <summary>
    /// The peers of a probe line (<c>{"numpy", "numpy_blas", "numpy_threads", "torch", "torch_blas", "torch_capability",
    /// "torch_threads"}</c>): accepted ones, and a reason for each refused one: numpy without a BLAS, on the reference BLAS
    /// (Debian's libblas.so.3 under blas/, about 2 GFLOP/s), or either peer on more than <paramref name="threads"/> threads.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="probeLine"/> is null.</exception>
    /// <exception cref="InvalidDataException">The line is not a probe result.</exception>
    public static (IReadOnlyList<PeerInfo> Accepted, IReadOnlyList<string> Refused) Classify(string probeLine, int threads)
    {
        ArgumentNullException.ThrowIfNull(probeLine);
        try
        {
            using var doc = JsonDocument.Parse(probeLine);
            var j = doc.RootElement;
            var accepted = new List<PeerInfo>();
            var refused = new List<string>();
            var libs = j.GetProperty("numpy_blas").EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
            // The library that provides the BLAS: OpenBLAS's own .so when loaded through Debian's libblas.so.3 alternative.
            string? blas = libs.FirstOrDefault(l => Path.GetFileName(l).Contains("openblas", StringComparison.Ordinal) || Path.GetFileName(l).Contains("mkl", StringComparison.Ordinal)
                || Path.GetFileName(l).Contains("blis", StringComparison.Ordinal)) ?? libs.FirstOrDefault(l => Path.GetFileName(l).StartsWith("libblas", StringComparison.Ordinal));
            int numpyThreads = j.GetProperty("numpy_threads").GetInt32(), torchThreads = j.GetProperty("torch_threads").GetInt32();
            if (blas is null) refused.Add("numpy: no BLAS library is loaded");
            else if (blas.Contains("/blas/", StringComparison.Ordinal) && !Path.GetFileName(blas).Contains("openblas", StringComparison.Ordinal))
                refused.Add($"numpy: linked to the reference BLAS {blas} (about 2 GFLOP/s); install libopenblas0-pthread");
            else if (numpyThreads > threads) refused.Add($"numpy: OpenBLAS runs {numpyThreads} threads, more than Kiln's {threads}");
            else accepted.Add(new("numpy", "numpy " + j.GetProperty("numpy").GetString(), Path.GetFileName(blas), numpyThreads));
            if (torchThreads > threads) refused.Add($"torch: runs {torchThreads} threads, more than Kiln's {threads}");
            else accepted.Add(new("torch", "PyTorch " + j.GetProperty("torch").GetString(), $"BLAS_INFO={j.GetProperty("torch_blas").GetString()}, CPU capability {j.GetProperty("torch_capability").GetString()}", torchThreads));
            return (accepted, refused);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"bench: the peer probe printed a malformed line ({ex.Message}): {probeLine}", ex);
        }
    }

    /// <summary>The full path of peer_bench.py.</summary>
    public string PeerBench { get; }

    /// <summary>
    /// ../shared/peers/peer_bench.py beside the repository: shared/peers/peer_bench.py in <paramref name="startDirectory"/>
    /// or the nearest folder above it that has one; null when none has.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="startDirectory"/> is null or empty.</exception>
    public static string? Find(string startDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(startDirectory);
        for (var dir = new DirectoryInfo(startDirectory); dir is not null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, "shared", "peers", "peer_bench.py");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>
    /// Times <paramref name="workload"/> with every peer (one python process): one <see cref="PeerResult"/> per peer that
    /// has it. A process that fails is reported to the warning callback and yields what it printed before failing.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="workload"/> is null or empty.</exception>
    /// <exception cref="InvalidOperationException">python could not be started.</exception>
    /// <exception cref="InvalidDataException">The peer printed a malformed JSON line.</exception>
    public IReadOnlyList<PeerResult> Run(string workload)
    {
        ArgumentException.ThrowIfNullOrEmpty(workload);
        if (_accepted.Count == 0) return [];
        using var proc = Start(PeerScript, Path.GetDirectoryName(PeerBench)!, "--json", "--threads", Threads.ToString(CultureInfo.InvariantCulture), workload);
        var err = proc.StandardError.ReadToEndAsync();
        var results = Parse(proc.StandardOutput);
        proc.WaitForExit();
        if (proc.ExitCode != 0) _warn?.Invoke($"peer failed on {workload}: {err.Result.Trim()}");
        return results.Where(r => _accepted.Contains(r.Peer)).ToList();
    }

    /// <summary>
    /// numpy's SGEMM of <paramref name="shape"/> with OPENBLAS_NUM_THREADS=1, in GFLOP per CPU-second of the thread that
    /// runs it (<c>time.thread_time</c>) over about <see cref="PeakProbe.OneCoreFlops"/> flops; null when the process fails
    /// (reported to the warning callback).
    /// </summary>
    public double? OneCoreGflops(GemmShape shape)
    {
        if (!_accepted.Contains("numpy")) return null;
        var ci = CultureInfo.InvariantCulture;
        using var proc = Start(OneCoreScript, shape.M.ToString(ci), shape.N.ToString(ci), shape.K.ToString(ci), PeakProbe.OneCoreFlops.ToString(ci));
        var err = proc.StandardError.ReadToEndAsync();
        string output = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        if (proc.ExitCode == 0 && double.TryParse(output.Trim(), ci, out double v)) return v;
        _warn?.Invoke($"one-core peer failed: {err.Result.Trim()}");
        return null;
    }

    /// <summary>Every result in peer_bench.py --json output; lines that do not start with '{' (log lines) are skipped.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="output"/> is null.</exception>
    /// <exception cref="InvalidDataException">A line starting with '{' is not a result (see <see cref="ParseLine"/>).</exception>
    public static IReadOnlyList<PeerResult> Parse(TextReader output)
    {
        ArgumentNullException.ThrowIfNull(output);
        var results = new List<PeerResult>();
        for (string? line; (line = output.ReadLine()) is not null;)
            if (ParseLine(line) is { } r) results.Add(r);
        return results;
    }

    /// <summary>
    /// One line of peer_bench.py --json output: <c>{"workload", "peer", "seconds", "rate", "unit"}</c>; null for a line
    /// that does not start with '{'.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="line"/> is null.</exception>
    /// <exception cref="InvalidDataException">The line is not valid JSON, or a field is missing or of the wrong type;
    /// the message quotes the line.</exception>
    public static PeerResult? ParseLine(string line)
    {
        ArgumentNullException.ThrowIfNull(line);
        if (!line.StartsWith('{')) return null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            var j = doc.RootElement;
            return new(Text(j, "workload"), Text(j, "peer"), Field(j, "seconds").GetDouble(), Field(j, "rate").GetDouble(), Text(j, "unit"));
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"bench: peer_bench.py printed a malformed result line ({ex.Message}): {line}", ex);
        }
    }

    static JsonElement Field(JsonElement j, string name) => j.TryGetProperty(name, out var v) ? v : throw new FormatException($"no \"{name}\" field");
    static string Text(JsonElement j, string name) => Field(j, name).GetString() ?? throw new FormatException($"\"{name}\" is null");

    Process Start(string script, params string[] args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // OpenBLAS otherwise starts a thread per CPU; the one-core script sets its own.
        psi.Environment["OPENBLAS_NUM_THREADS"] = Threads.ToString(CultureInfo.InvariantCulture);
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi) ?? throw new InvalidOperationException($"bench: could not start {Python}");
    }
}
