using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Kiln.Bench;

/// <summary>
/// A peer runner (bench/Kiln.Bench.Torch, bench/Kiln.Bench.Onnx) run as a child process that keeps its inputs between
/// rounds, driven by the line protocol of bench/peers/PeerProtocol.cs, which each runner compiles in: a JSON hello, then
/// <c>prepare NAME DIR</c>, <c>time NAME</c> and <c>quit</c>.
/// </summary>
public abstract class ChildPeer : IDisposable
{
    readonly Process _proc;

    /// <summary>Wraps a started runner whose hello gave <paramref name="info"/>.</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    protected ChildPeer(Process proc, PeerInfo info)
    {
        ArgumentNullException.ThrowIfNull(proc);
        ArgumentNullException.ThrowIfNull(info);
        _proc = proc; Info = info;
    }

    /// <summary>The peer's name in results (<see cref="PeerInfo.Peer"/>).</summary>
    public string Name => Info.Peer;

    /// <summary>Version, threads and GEMM backend from the runner's hello.</summary>
    public PeerInfo Info { get; }

    /// <summary>
    /// Starts <c>dotnet <paramref name="runnerDll"/> --threads <paramref name="threads"/></c> with <paramref name="environment"/>
    /// added, and reads its first line (the hello). Returns the process and that line, or no process and a one-line reason
    /// naming <paramref name="name"/> when the runner is not built (<paramref name="project"/> names it) or dotnet does not start.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="name"/>, <paramref name="project"/> or <paramref name="environment"/> is null.</exception>
    protected static (Process? Proc, string? Hello, string? Reason) Start(string? runnerDll, string name, string project, int threads, IReadOnlyDictionary<string, string> environment)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(project);
        ArgumentNullException.ThrowIfNull(environment);
        if (runnerDll is null || !File.Exists(runnerDll)) return (null, null, $"{name}: {project} is not built (run bench/setup-peers.sh)");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(runnerDll);
        psi.ArgumentList.Add("--threads");
        psi.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
        foreach (var (key, value) in environment) psi.Environment[key] = value;
        Process proc;
        try { proc = Process.Start(psi) ?? throw new InvalidOperationException("no process"); }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException) { return (null, null, $"{name}: could not start dotnet: {ex.Message}"); }
        proc.ErrorDataReceived += (_, _) => { };
        proc.BeginErrorReadLine();
        return (proc, proc.StandardOutput.ReadLine(), null);
    }

    /// <summary>Ends a runner whose hello was refused.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="proc"/> is null.</exception>
    protected static void Stop(Process proc)
    {
        ArgumentNullException.ThrowIfNull(proc);
        proc.Kill(); proc.WaitForExit(); proc.Dispose();
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
        GC.SuppressFinalize(this);
    }
}

/// <summary>What a peer is: its name in results, version, BLAS/GEMM backend and threads.</summary>
/// <param name="Peer">The peer's name in results ("numpy", "torch", "libtorch", "libtorch-default").</param>
/// <param name="Version">Its version, e.g. "libtorch 2.10.0 (TorchSharp 0.107.0)".</param>
/// <param name="Blas">Its BLAS/GEMM backend as it reports it.</param>
/// <param name="Threads">Threads it computes on.</param>
public sealed record PeerInfo(string Peer, string Version, string Blas, int Threads);
