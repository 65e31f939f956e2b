using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Kiln.Bench;

/// <summary>
/// libtorch 2 as a peer: bench/Kiln.Bench.Torch (TorchSharp) run as a child process that keeps its inputs between
/// rounds, driven by the line protocol its Program documents. <see cref="Open"/> starts one and reads its hello; a
/// runner that is not built or cannot load libtorch yields a one-line reason instead.
/// </summary>
public sealed class TorchPeer : IDisposable
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

    readonly Process _proc;

    TorchPeer(Process proc, string name, PeerInfo info)
    {
        _proc = proc; Name = name; Info = info;
    }

    /// <summary>The peer's name in results: <see cref="KernelName"/> or <see cref="DefaultName"/>.</summary>
    public string Name { get; }

    /// <summary>Version, threads and GEMM backend from the runner's hello.</summary>
    public PeerInfo Info { get; }

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
        if (runnerDll is null || !File.Exists(runnerDll)) return (null, $"{name}: bench/Kiln.Bench.Torch is not built (run bench/setup-peers.sh)");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(runnerDll);
        psi.ArgumentList.Add("--threads");
        psi.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
        // One OpenMP team of the asked size from the start, as torch.set_num_threads leaves it.
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        if (kernel) psi.Environment["GLIBC_TUNABLES"] = CachingMalloc;
        Process proc;
        try { proc = Process.Start(psi) ?? throw new InvalidOperationException("no process"); }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException) { return (null, $"{name}: could not start dotnet: {ex.Message}"); }
        proc.ErrorDataReceived += (_, _) => { };
        proc.BeginErrorReadLine();
        string? hello = proc.StandardOutput.ReadLine();
        var (info, reason) = ParseHello(hello, name, threads);
        if (info is null)
        {
            proc.Kill(); proc.WaitForExit(); proc.Dispose();
            return (null, reason);
        }
        return (new TorchPeer(proc, name, info), null);
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

    /// <summary>
    /// Gives the peer <paramref name="workload"/>'s inputs from <paramref name="inputFolder"/> (<see cref="WriteInputs"/>);
    /// returns its output on them (float32), or null when the peer does not have the workload.
    /// </summary>
    /// <exception cref="InvalidDataException">The peer answered something else or exited.</exception>
    public float[]? Prepare(string workload, string inputFolder)
    {
        var j = Ask($"prepare {workload} {inputFolder}");
        if (j.TryGetProperty("skip", out _)) return null;
        return MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(inputFolder, "peer.bin"))).ToArray();
    }

    /// <summary>The median seconds of the prepared workload, timed in the runner like Kiln's side (<see cref="Timing.MedianSeconds"/>).</summary>
    /// <exception cref="InvalidDataException">The peer answered something else or exited.</exception>
    public double Time(string workload) => Ask($"time {workload}").GetProperty("seconds").GetDouble();

    JsonElement Ask(string command)
    {
        _proc.StandardInput.WriteLine(command);
        _proc.StandardInput.Flush();
        string? line = _proc.StandardOutput.ReadLine() ?? throw new InvalidDataException($"bench: {Name} exited on `{command}`");
        using var doc = JsonDocument.Parse(line);
        var j = doc.RootElement.Clone();
        if (j.TryGetProperty("error", out var e)) throw new InvalidDataException($"bench: {Name} on `{command}`: {e.GetString()}");
        return j;
    }

    /// <summary>
    /// Writes <paramref name="inputs"/> into <paramref name="folder"/> as the runner reads them: inputs.txt (a line
    /// "name dtype d0,d1,..." each) and name.bin (raw float32 or int64, little-endian; a bfloat16 input as its float32 values).
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="NotSupportedException">An input is not Float32, BFloat16 or Int64.</exception>
    public static void WriteInputs(string folder, IEnumerable<(string Name, Tensor Value)> inputs)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(inputs);
        var lines = new List<string>();
        foreach (var (name, t) in inputs)
        {
            // A BFloat16 input travels as its float32 widening (exact); the runner rounds it back to bfloat16, also exactly.
            (byte[] bytes, string tag) = t.DType switch
            {
                DType.Float32 => (MemoryMarshal.AsBytes(t.ToArray<float>().AsSpan()).ToArray(), "float32"),
                DType.BFloat16 => (MemoryMarshal.AsBytes(t.To(DType.Float32).ToArray<float>().AsSpan()).ToArray(), "bfloat16"),
                DType.Int64 => (MemoryMarshal.AsBytes(t.ToArray<long>().AsSpan()).ToArray(), "int64"),
                _ => throw new NotSupportedException($"bench: input {name} is {t.DType}; the peer reads Float32, BFloat16 and Int64"),
            };
            File.WriteAllBytes(Path.Combine(folder, name + ".bin"), bytes);
            lines.Add($"{name} {tag} {string.Join(',', t.Shape.ToArray())}");
        }
        File.WriteAllLines(Path.Combine(folder, "inputs.txt"), lines);
    }

    /// <summary>‖a − b‖₂ / ‖b‖₂ in float64 (0 when both are zero; infinity when the lengths differ).</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public static double RelativeError(float[] a, float[] b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Length != b.Length) return double.PositiveInfinity;
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++) { double d = (double)a[i] - b[i]; diff += d * d; norm += (double)b[i] * b[i]; }
        return diff == 0 ? 0 : Math.Sqrt(diff / norm);
    }

    /// <summary>Asks the runner to quit and waits for it.</summary>
    public void Dispose()
    {
        try { _proc.StandardInput.WriteLine("quit"); _proc.StandardInput.Close(); }
        catch (IOException) { }
        if (!_proc.WaitForExit(5000)) _proc.Kill();
        _proc.Dispose();
    }
}

/// <summary>What a peer is: its name in results, version, BLAS/GEMM backend and threads.</summary>
/// <param name="Peer">The peer's name in results ("numpy", "torch", "libtorch", "libtorch-default").</param>
/// <param name="Version">Its version, e.g. "libtorch 2.10.0 (TorchSharp 0.107.0)".</param>
/// <param name="Blas">Its BLAS/GEMM backend as it reports it.</param>
/// <param name="Threads">Threads it computes on.</param>
public sealed record PeerInfo(string Peer, string Version, string Blas, int Threads);
