using Kiln.IO;
using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>The looping tour step: baseline against naive and damped looping of the embedded tiny Qwen3-style checkpoint.</summary>
public static class LoopTour
{
    public static bool Run(Device device)
    {
        string dir = LmVerb.EmbeddedModel;
        var model = DecoderModel.Load(dir, device);
        var tok = HfCheckpoint.LoadTokenizer(dir);
        var items = MultipleChoice.Read(Path.Combine(dir, "probe.jsonl")).Take(60).ToList();
        var text = tok.EncodeToIds(File.ReadAllText(Path.Combine(dir, "heldout.txt"))).ToArray();
        var window = LoopOptions.DefaultWindow(model.Config.Layers);
        Cli.Err.WriteLine($"  {model.Config.ModelType}, {model.Config.Layers} layers x {model.Config.HiddenSize}; window [{window.Start},{window.End}]; {items.Count} cloze items, {text.Length} held-out tokens");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var rows = Cli.Progress("looping", 5, report =>
            LoopSweep.Run(model, s => tok.EncodeToIds(s).ToArray(), items, text, 128, [window], [2, 4], [LoopRule.Naive, LoopRule.Damped], null, (d, _) => report(d)));
        LoopVerb.Report(rows, json: false);
        string png = Path.Combine(Path.GetTempPath(), "kiln-tour-loop.png");
        LoopVerb.Plot(rows, png, "embedded tiny Qwen3: looping a mid-stack window");
        Cli.Err.WriteLine($"  {sw.Elapsed.TotalSeconds:F1} s; plot: {png}");
        // The method's claim at this scale: damped stays near the baseline while naive degrades with K.
        var b = rows[0];
        var naive4 = rows.First(r => r.Rule == LoopRule.Naive && r.K == 4);
        var damped4 = rows.First(r => r.Rule == LoopRule.Damped && r.K == 4);
        return damped4.Perplexity < naive4.Perplexity && b.Perplexity > 0;
    }
}
