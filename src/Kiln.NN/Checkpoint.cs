using Kiln.IO;

namespace Kiln.NN;

/// <summary>
/// A training checkpoint in one safetensors file: the model's state ("model.*"), the optimizer's ("optimizer.*", with
/// its schedule's) and the position of each named random stream ("generator.{name}.seed" and ".counter"), so training
/// resumed from it continues exactly as if it had not stopped.
/// </summary>
public static class Checkpoint
{
    /// <summary>Writes the checkpoint to <paramref name="path"/> (replacing it).</summary>
    public static void Save(string path, Module model, Optimizer? optimizer = null, IReadOnlyDictionary<string, Generator>? generators = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var all = new Dictionary<string, Tensor>();
        foreach (var (k, v) in model.StateDict()) all["model." + k] = v;
        if (optimizer is not null) foreach (var (k, v) in optimizer.StateDict()) all["optimizer." + k] = v;
        foreach (var (name, g) in generators ?? new Dictionary<string, Generator>())
        {
            all[$"generator.{name}.seed"] = Tensor.FromArray([unchecked((long)g.Seed)]).Reshape();
            all[$"generator.{name}.counter"] = Tensor.FromArray([unchecked((long)g.Counter)]).Reshape();
        }
        Safetensors.Save(path, all, new Dictionary<string, string> { ["format"] = "kiln-checkpoint" });
    }

    /// <summary>Restores a checkpoint written by <see cref="Save"/> into the same kinds of model, optimizer and generators.</summary>
    /// <exception cref="InvalidDataException">The file is not a Kiln checkpoint, or lacks a part asked for.</exception>
    /// <exception cref="ArgumentException">A part does not fit (see <see cref="Module.LoadStateDict"/> and <see cref="Optimizer.LoadStateDict"/>), or a generator was seeded differently.</exception>
    public static void Load(string path, Module model, Optimizer? optimizer = null, IReadOnlyDictionary<string, Generator>? generators = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var all = Safetensors.Load(path);
        Dictionary<string, Tensor> Part(string prefix) =>
            all.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
        var modelState = Part("model.");
        if (modelState.Count == 0) throw new InvalidDataException($"{path}: no model state (keys 'model.*'); not a Kiln checkpoint?");
        model.LoadStateDict(modelState);
        if (optimizer is not null)
        {
            var opt = Part("optimizer.");
            if (opt.Count == 0) throw new InvalidDataException($"{path}: no optimizer state (keys 'optimizer.*')");
            optimizer.LoadStateDict(opt);
        }
        foreach (var (name, g) in generators ?? new Dictionary<string, Generator>())
        {
            if (!all.TryGetValue($"generator.{name}.seed", out var seed) || !all.TryGetValue($"generator.{name}.counter", out var counter))
                throw new InvalidDataException($"{path}: no state for generator '{name}'");
            ulong s = unchecked((ulong)seed.Item<long>());
            if (s != g.Seed) throw new ArgumentException($"checkpoint: generator '{name}' was seeded with {g.Seed}, the checkpoint's with {s}", nameof(generators));
            g.Counter = unchecked((ulong)counter.Item<long>());
        }
    }
}
