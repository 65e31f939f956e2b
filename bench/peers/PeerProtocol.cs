using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Kiln.Bench;

/// <summary>One input that Kiln wrote for a peer runner: its name, dtype tag, shape and raw little-endian bytes.</summary>
/// <param name="Name">The input's name in the workload (the harness's <c>WorkloadCase.Inputs</c>).</param>
/// <param name="DType">"float32", "bfloat16" (its float32 widening travels) or "int64".</param>
/// <param name="Shape">Its extents.</param>
/// <param name="Bytes">Its values, raw little-endian (float32 for "bfloat16").</param>
public sealed record PeerInput(string Name, string DType, long[] Shape, byte[] Bytes)
{
    /// <summary>The values as float32 ("float32" and "bfloat16" inputs).</summary>
    /// <exception cref="InvalidDataException">The input is int64.</exception>
    public float[] Floats() => DType is "float32" or "bfloat16" ? MemoryMarshal.Cast<byte, float>(Bytes).ToArray()
        : throw new InvalidDataException($"input {Name} is {DType}, not float32");
}

/// <summary>A prepared workload in a peer runner: its timed run, its output on Kiln's inputs, and what it holds.</summary>
/// <param name="run">One timed run.</param>
/// <param name="output">The output compared with Kiln's, flattened to float32.</param>
/// <param name="held">Disposed with the case (native tensors, sessions); may be empty.</param>
public sealed class PeerCase(Action run, Func<float[]> output, IEnumerable<IDisposable> held) : IDisposable
{
    /// <summary>One timed run.</summary>
    public Action Run { get; } = run;
    /// <summary>The output compared with Kiln's, flattened to float32.</summary>
    public Func<float[]> Output { get; } = output;
    /// <summary>Disposes what the case holds.</summary>
    public void Dispose() { foreach (var h in held) h.Dispose(); }
}

/// <summary>
/// The line protocol of `kiln bench`'s peer runners (bench/Kiln.Bench.Torch, bench/Kiln.Bench.Onnx), compiled into each;
/// the harness's <c>ChildPeer</c> is the other end. The runner prints one JSON hello (or <c>{"error"}</c>), then answers
/// each line on stdin with one JSON line:
/// <list type="bullet">
/// <item><c>prepare NAME DIR</c>: reads the workload's inputs that Kiln wrote into DIR (inputs.txt: "name dtype d0,d1,..";
/// name.bin: raw little-endian values), writes its output for the same inputs to DIR/peer.bin (float32) and answers
/// <c>{"workload", "prepared": true}</c>, or <c>{"workload", "skip": reason}</c> for a workload it does not have.</item>
/// <item><c>time NAME</c>: the prepared workload's median seconds (<see cref="Timing.MedianSeconds"/>, the same rule as
/// Kiln's side): <c>{"workload", "seconds"}</c>.</item>
/// <item><c>quit</c> or the end of input: exits.</item>
/// </list>
/// </summary>
public static class PeerProtocol
{
    /// <summary>The N of <c>--threads N</c>, the runners' only argument.</summary>
    /// <exception cref="ArgumentException">The arguments are not <c>--threads N</c> with N at least 1.</exception>
    public static int Threads(string[] args, string runner) =>
        args.Length == 2 && args[0] == "--threads" && int.TryParse(args[1], CultureInfo.InvariantCulture, out int t) && t > 0
            ? t : throw new ArgumentException($"usage: {runner} --threads N (got {string.Join(' ', args)})", nameof(args));

    /// <summary>Prints <paramref name="value"/> as one JSON line and flushes.</summary>
    public static void Reply(Dictionary<string, object> value) { Console.Out.WriteLine(JsonSerializer.Serialize(value)); Console.Out.Flush(); }

    /// <summary>Reads DIR/inputs.txt and the .bin file of each input it lists.</summary>
    /// <exception cref="InvalidDataException">A dtype is not float32, bfloat16 or int64.</exception>
    public static IReadOnlyDictionary<string, PeerInput> ReadInputs(string dir)
    {
        var inputs = new Dictionary<string, PeerInput>();
        foreach (var line in File.ReadAllLines(Path.Combine(dir, "inputs.txt")))
        {
            var f = line.Split(' ');
            if (f[1] is not ("float32" or "bfloat16" or "int64")) throw new InvalidDataException($"inputs.txt: dtype {f[1]} of {f[0]} is not float32, bfloat16 or int64");
            long[] shape = f[2].Length == 0 ? [] : f[2].Split(',').Select(d => long.Parse(d, CultureInfo.InvariantCulture)).ToArray();
            inputs[f[0]] = new(f[0], f[1], shape, File.ReadAllBytes(Path.Combine(dir, f[0] + ".bin")));
        }
        return inputs;
    }

    /// <summary>
    /// Answers the protocol's commands on stdin until <c>quit</c> or the end of input; <paramref name="prepare"/> builds a
    /// workload's case from Kiln's inputs, or returns null for a workload the peer does not have (<paramref name="peer"/>
    /// names it in the skip reason).
    /// </summary>
    public static void Serve(string peer, Func<string, IReadOnlyDictionary<string, PeerInput>, PeerCase?> prepare)
    {
        PeerCase? current = null;
        string? currentName = null;
        try
        {
            for (string? line; (line = Console.In.ReadLine()) is not null;)
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length == 0) continue;
                if (parts[0] == "quit") break;
                if (parts[0] == "prepare" && parts.Length == 3)
                {
                    current?.Dispose(); current = null; currentName = null;
                    current = prepare(parts[1], ReadInputs(parts[2]));
                    if (current is null) { Reply(new() { ["workload"] = parts[1], ["skip"] = $"not a {peer} workload" }); continue; }
                    currentName = parts[1];
                    File.WriteAllBytes(Path.Combine(parts[2], "peer.bin"), MemoryMarshal.AsBytes(current.Output().AsSpan()).ToArray());
                    Reply(new() { ["workload"] = parts[1], ["prepared"] = true });
                }
                else if (parts[0] == "time" && parts.Length == 2 && parts[1] == currentName && current is not null)
                    Reply(new() { ["workload"] = parts[1], ["seconds"] = Timing.MedianSeconds(current.Run) });
                else Reply(new() { ["error"] = $"bad command: {line}" });
            }
        }
        finally { current?.Dispose(); }
    }
}
