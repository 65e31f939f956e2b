using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Kiln.Bench;

/// <summary>
/// libtorch 2 as a peer: bench/Kiln.Bench.Torch (TorchSharp) run as a child process that keeps its inputs between
/// rounds, driven by the runners' line protocol (<see cref="ChildPeer"/>). <see cref="Open"/> starts one and reads its hello; a
/// runner that is not built or cannot load libtorch yields a one-line reason instead.
/// </summary>
public sealed class TorchPeer : ChildPeer
{
    /// <summary>The peer name of libtorch with its allocator made to cache (kernel against kernel; the headline ratio).</summary>
    public const string KernelName = "libtorch";
    /// <summary>The peer name of libtorch as a user gets it by default (glibc's malloc maps and unmaps large outputs).</summary>
    public const string DefaultName = "libtorch-default";

    /// <summary>
    /// glibc malloc settings that make it keep freed memory (no mmap for large blocks, no trimming), so libtorch reuses
    /// output buffers as a caching allocator would, and Kiln's pooled outputs are compared kernel against kernel.
    /// </summary>
    public const string CachingMalloc = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=8589934592";

    TorchPeer(Process proc, PeerInfo info) : base(proc, info) { }

    /// <summary>
    /// The built runner: bench/Kiln.Bench.Torch/bin/Release/net10.0/Kiln.Bench.Torch.dll under <paramref name="benchFolder"/>
    /// (<see cref="BenchReport.DefaultFolder"/>); null when it is not built.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="benchFolder"/> is null or empty.</exception>
    public static string? FindRunner(string benchFolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(benchFolder);
        var dll = Path.Combine(benchFolder, "Kiln.Bench.Torch", "bin", "Release", "net10.0", "Kiln.Bench.Torch.dll");
        return File.Exists(dll) ? dll : null;
    }

    /// <summary>
    /// Starts the runner at <paramref name="runnerDll"/> on <paramref name="threads"/> threads, with glibc's malloc made to
    /// cache when <paramref name="kernel"/>, and reads its hello. Returns the peer, or null and a one-line reason when the
    /// runner is missing, does not load libtorch, or runs more threads than asked.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is less than 1.</exception>
    public static (TorchPeer? Peer, string? Reason) Open(string? runnerDll, int threads, bool kernel)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"bench: threads must be at least 1, not {threads}");
        string name = kernel ? KernelName : DefaultName;
        var env = new Dictionary<string, string>
        {
            // One OpenMP team of the asked size from the start, as torch.set_num_threads leaves it.
            ["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture),
        };
        if (kernel) env["GLIBC_TUNABLES"] = CachingMalloc;
        var (proc, hello, failed) = Start(runnerDll, name, "bench/Kiln.Bench.Torch", threads, env);
        if (proc is null) return (null, failed);
        var (info, reason) = ParseHello(hello, name, threads);
        if (info is null) { Stop(proc); return (null, reason); }
        return (new TorchPeer(proc, info), null);
    }

    /// <summary>
    /// The runner's first line: <c>{"peer", "version", "torchsharp", "threads", "config"}</c> gives the peer's
    /// <see cref="PeerInfo"/> (GEMM backend from the BLAS_INFO and oneDNN lines of at::show_config); <c>{"error"}</c>, no
    /// line, or more threads than <paramref name="threads"/> give a one-line reason naming <paramref name="name"/>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/> is null.</exception>
    public static (PeerInfo? Info, string? Reason) ParseHello(string? line, string name, int threads)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (line is null) return (null, $"{name}: the runner exited without a word");
        try
        {
            using var doc = JsonDocument.Parse(line);
            var j = doc.RootElement;
            if (j.TryGetProperty("error", out var e)) return (null, $"{name}: {e.GetString()}");
            int peerThreads = j.GetProperty("threads").GetInt32();
            if (peerThreads > threads) return (null, $"{name}: runs {peerThreads} threads, more than Kiln's {threads}");
            string config = j.GetProperty("config").GetString() ?? "";
            string Find(string pattern) => Regex.Match(config, pattern) is { Success: true } m ? m.Groups[1].Value : "";
            string mkl = Find(@"Math Kernel Library Version ([0-9.]+)"), onednn = Find(@"MKL-DNN (v[0-9.]+)"), blasInfo = Find(@"BLAS_INFO=([^,\s]+)");
            string blas = $"{(blasInfo.Length > 0 ? blasInfo : "BLAS unknown")}{(mkl.Length > 0 ? " " + mkl : "")}{(onednn.Length > 0 ? ", oneDNN " + onednn : "")}, CPU capability {(Find(@"CPU capability usage: (\S+)") is { Length: > 0 } c ? c : "unknown")}";
            string version = j.GetProperty("version").GetString() ?? "?";
            return (new PeerInfo(name, $"libtorch {string.Join('.', version.Split('.').Take(3))} (TorchSharp {j.GetProperty("torchsharp").GetString()})", blas, peerThreads), null);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (null, $"{name}: unreadable hello ({ex.Message}): {line}");
        }
    }
}
