using System.CommandLine;
using Kiln.Distributed;
using Kiln.IO;
using Kiln.Methods.Looping;
using Kiln.NN.Decoder;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln train-lm`: trains the embedded looping checkpoint (or a variant) from a text corpus and writes it in Hugging Face layout.</summary>
public static class TrainLmVerb
{
    public static Command Build()
    {
        var cmd = new Command("train-lm", "Train the small Qwen3-style checkpoint that `kiln loop` and `kiln tour` use, from a text corpus, into a Hugging Face layout folder");
        var corpus = new Option<string>("--corpus") { Description = "UTF-8 corpus; the embedded public-domain corpus by default", DefaultValueFactory = _ => Path.Combine(LmVerb.EmbeddedModel, "corpus.txt") };
        var outDir = new Option<string>("--out") { Description = "Output folder", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => TinyLm.Training.Steps };
        var seed = new Option<ulong>("--seed") { Description = "Seed", DefaultValueFactory = _ => TinyLm.Training.Seed };
        var device = Cli.DeviceOption("Device to train on (the shipped checkpoint is reproduced bit for bit on the CPU with AVX-512)");
        var distributed = new Option<bool>("--distributed") { Description = "Data-parallel over the ranks of an MPI job (mpirun -np N kiln train-lm --distributed): each rank computes its share of every batch, gradients are averaged, rank 0 writes the checkpoint" };
        foreach (var o in new Option[] { corpus, outDir, steps, seed, device, distributed }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            using var group = p.GetValue(distributed) ? MpiProcessGroup.Init() : null;
            DistributedDataParallel? ddp = null;
            bool lead = group is null || group.Rank == 0;
            string dir = Cli.OutputFolder(p.GetValue(outDir)!, "--out");
            using var lease = Cli.OpenDevice(p, device);
            var (train, held) = TinyLm.Split(File.ReadAllText(p.GetValue(corpus)!));
            var tokJson = HfTokenizer.ByteLevelJson([TinyLm.EndOfText]);
            var tok = HfTokenizer.Parse(tokJson);
            var tokens = tok.EncodeToIds(train).ToArray();
            var options = TinyLm.Training with
            {
                Steps = p.GetValue(steps), Seed = p.GetValue(seed), Device = lease.Device,
                DataParallel = group is null ? null : ps => ddp = new DistributedDataParallel(group, ps),
            };
            if (group is not null && lead)
                Cli.Err.WriteLine($"data-parallel over {group.WorldSize} ranks ({group.Library}): {options.Batch / group.WorldSize} of each batch's {options.Batch} sequences per rank");
            if (lead) Cli.Err.WriteLine($"{tokens.Length} training tokens, {held.Length} held-out characters; {TinyLm.Config.Layers} layers x {TinyLm.Config.HiddenSize}, {options.Steps} steps of {options.Batch} x {options.Context}");
            double last = double.NaN;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var weights = Cli.Progress("training", options.Steps, report => LmTrainer.Train(TinyLm.Config, tokens, options, (s, loss) =>
            {
                bool shown = !Cli.Interactive && s % 50 == 0;
                // Each rank has its share's loss; the batch's is their mean (the ranks agree on which steps report).
                if (group is not null && (shown || s == options.Steps))
                {
                    var sum = new[] { loss };
                    group.AllReduce(sum);
                    loss = sum[0] / group.WorldSize;
                }
                report(s); last = loss;
                if (lead && shown) Console.Error.WriteLine($"  step {s}: loss {loss:F3}");
            }));
            ddp?.Dispose();
            void Save()
            {
                DecoderWeights.Save(dir, TinyLm.Config, weights);
                File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokJson);
                File.WriteAllText(Path.Combine(dir, "heldout.txt"), held);
                File.WriteAllLines(Path.Combine(dir, "probe.jsonl"), TinyLm.BuildProbe(held, train));
            }
            if (group is null) Save(); else group.SaveOnRank0(Save);
            if (lead)
                Cli.Err.WriteLine($"final training loss {last:F3} nats/token; " +
                    $"{clock.Elapsed.TotalMilliseconds / options.Steps:F0} ms/step; wrote {dir}");
            return 0;
        });
        return cmd;
    }
}
