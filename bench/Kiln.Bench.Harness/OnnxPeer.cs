using System.Diagnostics;
using System.Text.Json;

namespace Kiln.Bench;

/// <summary>
/// ONNX Runtime as an inference peer: bench/Kiln.Bench.Onnx (Microsoft.ML.OnnxRuntime, CPU execution provider) run as a
/// child process on the runners' line protocol (<see cref="ChildPeer"/>). It has the inference workloads only (GEMM,
/// matrix-vector, softmax, layer norm, GELU, causal attention forward, the decoder blocks); the others drop out of its
/// rounds. A runner that is not built or cannot load ONNX Runtime yields a one-line reason instead.
/// </summary>
public sealed class OnnxPeer : ChildPeer
{
    /// <summary>The peer's name in results.</summary>
    public const string PeerName = "onnxruntime";

    OnnxPeer(Process proc, PeerInfo info) : base(proc, info) { }

    /// <summary>
    /// The built runner: bench/Kiln.Bench.Onnx/bin/Release/net10.0/Kiln.Bench.Onnx.dll under <paramref name="benchFolder"/>
    /// (<see cref="BenchReport.DefaultFolder"/>); null when it is not built.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="benchFolder"/> is null or empty.</exception>
    public static string? FindRunner(string benchFolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(benchFolder);
        var dll = Path.Combine(benchFolder, "Kiln.Bench.Onnx", "bin", "Release", "net10.0", "Kiln.Bench.Onnx.dll");
        return File.Exists(dll) ? dll : null;
    }

    /// <summary>
    /// Starts the runner at <paramref name="runnerDll"/> with <paramref name="threads"/> intra-op threads and reads its hello.
    /// Returns the peer, or null and a one-line reason when the runner is missing, does not load ONNX Runtime, or runs more
    /// threads than asked.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is less than 1.</exception>
    public static (OnnxPeer? Peer, string? Reason) Open(string? runnerDll, int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"bench: threads must be at least 1, not {threads}");
        var (proc, hello, failed) = Start(runnerDll, PeerName, "bench/Kiln.Bench.Onnx", threads, new Dictionary<string, string>());
        if (proc is null) return (null, failed);
        var (info, reason) = ParseHello(hello, threads);
        if (info is null) { Stop(proc); return (null, reason); }
        return (new OnnxPeer(proc, info), null);
    }

    /// <summary>
    /// The runner's first line: <c>{"peer", "version", "threads", "config"}</c> gives the peer's <see cref="PeerInfo"/>
    /// (GEMM backend: ONNX Runtime's MLAS, with the session settings); <c>{"error"}</c>, no line, or more threads than
    /// <paramref name="threads"/> give a one-line reason.
    /// </summary>
    public static (PeerInfo? Info, string? Reason) ParseHello(string? line, int threads)
    {
        if (line is null) return (null, $"{PeerName}: the runner exited without a word");
        try
        {
            using var doc = JsonDocument.Parse(line);
            var j = doc.RootElement;
            if (j.TryGetProperty("error", out var e)) return (null, $"{PeerName}: {e.GetString()}");
            int peerThreads = j.GetProperty("threads").GetInt32();
            if (peerThreads > threads) return (null, $"{PeerName}: runs {peerThreads} threads, more than Kiln's {threads}");
            return (new PeerInfo(PeerName, $"ONNX Runtime {j.GetProperty("version").GetString()}", j.GetProperty("config").GetString() ?? "", peerThreads), null);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (null, $"{PeerName}: unreadable hello ({ex.Message}): {line}");
        }
    }
}
