using Kiln;
using Kiln.IO;
using Kiln.NN;

// An application embedding Kiln: trains an MLP on the digits with a shuffling DataLoader and a warmup+cosine schedule,
// checkpoints half-way, resumes from the checkpoint in a fresh model and optimizer and checks the resumed run ends
// bit-identical to the uninterrupted one, then serves concurrent async inference. Exit 0 when every check holds.
const int Epochs = 12, Halfway = 6, BatchSize = 64, Tasks = 200;
var (all, labels) = Datasets.Digits();
var ((trainX, trainY), (testX, testY)) = Datasets.TrainTestSplit(all / 16.0, labels, testFraction: 0.2, seed: 7);
int stepsPerEpoch = trainX.Shape[0] / BatchSize;
string checkpoint = Path.Combine(Path.GetTempPath(), $"kiln-sample-{Environment.ProcessId}.safetensors");
int failures = 0;
void Check(bool ok, string what)
{
    Console.WriteLine($"{(ok ? "ok    " : "FAILED")} {what}");
    if (!ok) failures++;
}

// Uninterrupted: every epoch in one go. Interrupted: half the epochs, a checkpoint, and the rest in a new model,
// optimizer and loader whose state (weights, moments, step, schedule, shuffling and dropout streams) comes from the file.
var whole = new Run(seed: 1, stepsPerEpoch * Epochs);
var wholeLosses = whole.Train(trainX, trainY, 0, Epochs);

var first = new Run(seed: 1, stepsPerEpoch * Epochs);
var firstLosses = first.Train(trainX, trainY, 0, Halfway);
first.Save(checkpoint);
var resumed = new Run(seed: 2, stepsPerEpoch * Epochs);
resumed.Load(checkpoint);
File.Delete(checkpoint);
var resumedLosses = resumed.Train(trainX, trainY, Halfway, Epochs);

Console.WriteLine($"trained {whole.Optimizer.StepCount} steps ({Epochs} epochs of {stepsPerEpoch} batches of {BatchSize}), " +
    $"loss {wholeLosses[0]:F4} -> {wholeLosses[^1]:F4}, learning rate now {whole.Optimizer.CurrentLearningRate:E2}");
Check(resumed.Optimizer.StepCount == whole.Optimizer.StepCount, $"resumed at step {first.Optimizer.StepCount}, ended at step {resumed.Optimizer.StepCount}");
Check(firstLosses.Concat(resumedLosses).SequenceEqual(wholeLosses), "the resumed run's losses equal the uninterrupted run's, step by step");
var a = whole.Model.StateDict();
var b = resumed.Model.StateDict();
int differing = a.Count(kv => !kv.Value.ToDoubleArray().SequenceEqual(b[kv.Key].ToDoubleArray()));
Check(differing == 0, $"the resumed model is bit-identical to the uninterrupted one ({a.Count} tensors, {differing} differ)");

// Serving: the trained model answers concurrent requests; each task opens its own scope and NoGrad, awaits between
// taking its input and answering (both flow across the await), and frees what it made. Every answer must equal the
// serial answer for the same rows, and none may have recorded a graph.
var model = whole.Model;
model.Eval();
long[] expected;
using (Tensor.Scope())
using (Autograd.NoGrad())
    expected = model.Forward(testX).ArgMax(1).ToArray<long>();
double accuracy = expected.Zip(testY.ToArray<long>()).Count(p => p.First == p.Second) / (double)expected.Length;
Check(accuracy > 0.9, $"test accuracy {accuracy:P1} on {expected.Length} held-out digits");

long liveBefore = Runtime.MemoryOf(Device.Cpu).LiveStorages;
int rows = testX.Shape[0];
var requests = Enumerable.Range(0, Tasks).Select(i => Task.Run(async () =>
{
    int start = i * 7 % rows, n = Math.Min(1 + i % 16, rows - start);
    using var scope = Tensor.Scope();
    using var noGrad = Autograd.NoGrad();
    var x = testX.Narrow(0, start, n).Contiguous();
    await Task.Yield();
    var logits = model.Forward(x);
    await Task.Delay(i % 3);
    return (start, answer: logits.ArgMax(1).ToArray<long>(), recorded: logits.RequiresGrad);
})).ToArray();
var answers = await Task.WhenAll(requests);
Check(answers.All(r => !r.recorded), $"no request recorded a graph ({answers.Count(r => r.recorded)} did)");
int mismatches = answers.Sum(r => r.answer.Where((p, j) => p != expected[r.start + j]).Count());
GC.Collect();
GC.WaitForPendingFinalizers();
long leaked = Runtime.MemoryOf(Device.Cpu).LiveStorages - liveBefore;
Check(mismatches == 0, $"{Tasks} concurrent async requests ({answers.Sum(r => r.answer.Length)} rows): {mismatches} answers differ from the serial ones");
Check(leaked <= 0, $"the requests' scopes freed their tensors ({Math.Max(leaked, 0)} more storages live than before)");

Console.WriteLine($"summary: {model.ParameterCount} parameters, {whole.Optimizer.StepCount} steps, resumed bit-identically from step " +
    $"{first.Optimizer.StepCount}, test accuracy {accuracy:P1}, {Tasks} async requests, {mismatches} mismatches, {failures} failed checks");
return failures == 0 ? 0 : 1;

/// <summary>One training run: model, optimizer with its schedule, shuffling loader and the dropout stream.</summary>
sealed class Run
{
    public Sequential Model { get; }
    public AdamW Optimizer { get; }
    readonly Generator _shuffle = new(11), _dropout = new(12);
    Dictionary<string, Generator> Streams => new() { ["shuffle"] = _shuffle, ["dropout"] = _dropout };

    public Run(ulong seed, int totalSteps)
    {
        var g = new Generator(seed);
        Model = new Sequential(new Linear(64, 64, generator: g), new Activation(ActivationKind.Relu), new Dropout(0.1, _dropout), new Linear(64, 10, generator: g));
        Optimizer = new AdamW(Model.Parameters(), 3e-3) { Schedule = LrSchedule.Cosine(3e-3, totalSteps, 1e-4, warmup: 20) };
    }

    /// <summary>Trains epochs [from, to) and returns each step's loss.</summary>
    public List<double> Train(Tensor x, Tensor y, int from, int to)
    {
        // A fresh loader each time: its epochs' orders come from the shuffle stream, which the checkpoint carries.
        var loader = DataLoader.FromTensors([x, y], 64, shuffle: true, generator: _shuffle, dropLast: true, prefetch: 2);
        var losses = new List<double>();
        for (int epoch = from; epoch < to; epoch++)
            foreach (var batch in loader)
            {
                using var scope = Tensor.Scope();
                var loss = Losses.CrossEntropy(Model.Call(batch[0]), batch[1]);
                Optimizer.ZeroGrad();
                loss.Backward();
                Optimizer.Step();
                losses.Add(loss.Item());
                foreach (var t in batch) t.Dispose();
            }
        return losses;
    }

    public void Save(string path) => Checkpoint.Save(path, Model, Optimizer, Streams);
    public void Load(string path) => Checkpoint.Load(path, Model, Optimizer, Streams);
}
