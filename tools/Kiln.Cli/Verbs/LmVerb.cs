using System.CommandLine;
using Kiln.Distributed;
using Kiln.Gpu;
using Kiln.IO;
using Spectre.Console;
using Kiln.Methods.Looping;
using Kiln.NN.Decoder;

namespace Kiln.Cli;

/// <summary>`kiln lm logits|generate|perplexity`: a Hugging Face decoder checkpoint on Kiln, with or without a loop.</summary>
public static class LmVerb
{
    /// <summary>The embedded looping checkpoint shipped beside the executable.</summary>
    public static string EmbeddedModel => Path.Combine(AppContext.BaseDirectory, "Models", "looping-tiny");

    sealed record LoopArgs(Option<string> Model, Option<string?> Loop, Option<int> K, Option<string> Rule, Option<string?> Mode, Option<double> Alpha, Option<double> Beta, Option<string> Cache, Option<string> Device, Option<bool> TensorParallel);

    static LoopArgs AddLoopOptions(Command cmd)
    {
        var a = new LoopArgs(
            new Option<string>("--model") { Description = "Checkpoint folder (config.json, *.safetensors, tokenizer.json); the embedded tiny model by default", DefaultValueFactory = _ => EmbeddedModel },
            new Option<string?>("--loop") { Description = "Window a:b (inclusive, 0-based) to loop; none for the plain model" },
            new Option<int>("--k") { Description = "Sub-steps K", DefaultValueFactory = _ => 3 },
            new Option<string>("--rule") { Description = "damped, naive or rk", DefaultValueFactory = _ => "damped" },
            new Option<string?>("--mode") { Description = "block or layer (default: the model's)" },
            new Option<double>("--alpha") { Description = "Damped horizon alpha", DefaultValueFactory = _ => 1.0 },
            new Option<double>("--beta") { Description = "RK anchor weight beta", DefaultValueFactory = _ => 0.5 },
            new Option<string>("--cache") { Description = "Which sub-step writes the window's KV cache: first, last or none", DefaultValueFactory = _ => "first" },
            Cli.DeviceOption(),
            new Option<bool>("--tensor-parallel") { Description = "Split the model over the ranks of an MPI job (mpirun -np N kiln lm ... --tensor-parallel): each rank loads and runs its shard of every attention and MLP block; rank 0 writes the output" });
        foreach (var o in new Option[] { a.Model, a.Loop, a.K, a.Rule, a.Mode, a.Alpha, a.Beta, a.Cache, a.Device, a.TensorParallel }) cmd.Options.Add(o);
        return a;
    }

    // The model on this process's device; under --tensor-parallel, this rank's shard, with the MPI world it runs in.
    static (DecoderModel Model, MpiProcessGroup? Group) LoadModel(ParseResult p, LoopArgs a, Device device)
    {
        var group = p.GetValue(a.TensorParallel) ? MpiProcessGroup.Init() : null;
        var model = DecoderModel.Load(p.GetValue(a.Model)!, device, group);
        if (group is { Rank: 0 })
            Cli.Err.WriteLine($"tensor-parallel over {group.WorldSize} ranks ({group.Library}): {model.Config.Heads / group.WorldSize} of {model.Config.Heads} heads and {model.Config.IntermediateSize / group.WorldSize} of {model.Config.IntermediateSize} MLP columns per rank");
        return (model, group);
    }

    static LoopOptions? ParseLoop(ParseResult p, LoopArgs a)
    {
        if (p.GetValue(a.Loop) is not { } w) return null;
        var (s, e) = LoopOptions.ParseWindow(w);
        return new LoopOptions(s, e, p.GetValue(a.K), ParseEnum<LoopRule>(p.GetValue(a.Rule)!, "--rule"))
        {
            Mode = p.GetValue(a.Mode) is { } m ? ParseEnum<LoopMode>(m, "--mode") : null,
            Alpha = p.GetValue(a.Alpha), Beta = p.GetValue(a.Beta), Cache = ParseEnum<LoopCache>(p.GetValue(a.Cache)!, "--cache"),
        };
    }

    /// <summary>Parses an enum value case-insensitively, naming the option on failure.</summary>
    public static T ParseEnum<T>(string text, string option) where T : struct, Enum =>
        Enum.TryParse<T>(text, true, out var v) && Enum.IsDefined(v) ? v
            : throw new ArgumentException($"{option}: '{text}' is not one of {string.Join(", ", Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}");

    public static Command Build()
    {
        var cmd = new Command("lm", "Run a decoder-only checkpoint in Hugging Face layout (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, DeepSeek-V3/Moonlight): logits, generation, perplexity; optionally with a training-free loop");
        cmd.Subcommands.Add(Logits());
        cmd.Subcommands.Add(Generate());
        cmd.Subcommands.Add(PerplexityCmd());
        return cmd;
    }

    static Command Logits()
    {
        var cmd = new Command("logits", "Write the float32 logits [positions, vocabulary] of a token-id sequence to a .npy file");
        var a = AddLoopOptions(cmd);
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids", Required = true };
        var outFile = new Option<string>("--out") { Description = "Output .npy file", Required = true };
        cmd.Options.Add(ids); cmd.Options.Add(outFile);
        cmd.SetAction(p =>
        {
            var tokens = p.GetValue(ids)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => long.TryParse(s, out long v) ? v : throw new ArgumentException($"--ids: '{s}' is not an integer")).ToArray();
            if (tokens.Length == 0) throw new ArgumentException("--ids: no token ids given");
            Cli.OutputFile(p.GetValue(outFile)!, "--out");
            using var lease = Cli.OpenDevice(p, a.Device);
            var (model, group) = LoadModel(p, a, lease.Device);
            using var _ = group;
            var loop = ParseLoop(p, a);
            Tensor logits;
            using (Autograd.NoGrad()) logits = model.Forward(Tensor.FromArray(tokens, new Shape(1, tokens.Length)).To(lease.Device), null, loop);
            if (group is null or { Rank: 0 })
            {
                Npy.Save(p.GetValue(outFile)!, logits.Reshape(tokens.Length, model.Config.VocabSize).To(DType.Float32).Contiguous());
                Cli.Err.WriteLine($"wrote {tokens.Length} x {model.Config.VocabSize} logits{(loop is null ? "" : $" ({loop})")} to {p.GetValue(outFile)}");
            }
            return 0;
        });
        return cmd;
    }

    static Command Generate()
    {
        var cmd = new Command("generate", "Continue a prompt (greedy, or sampled with --temperature)");
        var a = AddLoopOptions(cmd);
        var prompt = new Option<string>("--prompt") { Description = "Prompt text", Required = true };
        var max = new Option<int>("--max") { Description = "New tokens", DefaultValueFactory = _ => 64 };
        var temp = new Option<double>("--temperature") { Description = "0 for greedy", DefaultValueFactory = _ => 0.0 };
        var seed = new Option<ulong>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0UL };
        var decode = new Option<string>("--decode") { Description = "Loop on every step (full), only the prompt (bypass)", DefaultValueFactory = _ => "full" };
        foreach (var o in new Option[] { prompt, max, temp, seed, decode }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(a.Model)!;
            using var lease = Cli.OpenDevice(p, a.Device);
            var (model, group) = LoadModel(p, a, lease.Device);
            using var _ = group;
            var tok = HfCheckpoint.LoadTokenizer(dir);
            var loop = ParseLoop(p, a);
            if (loop is not null) loop = loop with { Decode = ParseEnum<LoopDecode>(p.GetValue(decode)!, "--decode") };
            var ids = tok.EncodeToIds(p.GetValue(prompt)!).ToArray();
            var outIds = model.Generate(ids, p.GetValue(max), loop, p.GetValue(temp), new Generator(p.GetValue(seed)));
            // Every rank holds the same logits (the all-reduce gives equal bits), so every rank picks the same tokens.
            if (group is null or { Rank: 0 }) Console.Out.WriteLine(p.GetValue(prompt) + tok.Decode(outIds));
            return 0;
        });
        return cmd;
    }

    static Command PerplexityCmd()
    {
        var cmd = new Command("perplexity", "Perplexity of a text file in non-overlapping windows");
        var a = AddLoopOptions(cmd);
        var text = new Option<string>("--text") { Description = "UTF-8 text file", Required = true };
        var ctx = new Option<int>("--context") { Description = "Window length in tokens", DefaultValueFactory = _ => 128 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on standard output" };
        cmd.Options.Add(text); cmd.Options.Add(ctx); cmd.Options.Add(json);
        cmd.SetAction(p =>
        {
            string dir = p.GetValue(a.Model)!;
            using var lease = Cli.OpenDevice(p, a.Device);
            var (model, group) = LoadModel(p, a, lease.Device);
            using var _ = group;
            var tokens = HfCheckpoint.LoadTokenizer(dir).EncodeToIds(File.ReadAllText(p.GetValue(text)!)).ToArray();
            var loop = ParseLoop(p, a);
            var nll = Methods.Looping.Perplexity.WindowNll(model, tokens, p.GetValue(ctx), loop);
            if (nll.Length == 0) throw new ArgumentException($"--text: {tokens.Length} tokens are fewer than one window of {p.GetValue(ctx)}");
            double ppl = Math.Exp(nll.Average());
            if (group is { Rank: > 0 }) return 0;
            if (p.GetValue(json)) Cli.JsonLine(new { perplexity = ppl, windows = nll.Length, context = p.GetValue(ctx), loop = loop?.ToString() });
            else Cli.Err.WriteLine($"perplexity {ppl:F3} over {nll.Length} windows of {p.GetValue(ctx)} tokens{(loop is null ? "" : $" ({loop})")}");
            return 0;
        });
        return cmd;
    }
}
