using Kiln.IO;
using Kiln.NN;
using Kd = Kiln.NN.Distillation;

namespace Kiln.Methods.Distillation;

/// <summary>The student objectives the digits experiment compares.</summary>
public enum StudentLoss
{
    /// <summary>Cross entropy on the labels only (no teacher).</summary>
    CrossEntropy,
    /// <summary>Cross entropy + Hinton KD at temperature <see cref="DistillOptions.KdTemperature"/>.</summary>
    Kd,
    /// <summary>Cross entropy + logit-standardized KD at base temperature <see cref="DistillOptions.LskdTemperature"/>.</summary>
    LogitStandardizedKd,
    /// <summary>Plackett-Luce distillation alone (it contains a weighted cross entropy).</summary>
    Pld,
    /// <summary>Dual-head KD: cross entropy + KD on the main head, BinaryKL-Norm on an auxiliary head.</summary>
    DualHeadKd,
}

/// <summary>Settings of <see cref="DistillationExperiment.Run"/>; the defaults are the README's run.</summary>
public sealed record DistillOptions
{
    /// <summary>Hidden width of the teacher MLP (64 -&gt; h -&gt; h -&gt; 10).</summary>
    public int TeacherHidden { get; init; } = 128;
    /// <summary>Hidden width of the student MLP (64 -&gt; h -&gt; 10).</summary>
    public int StudentHidden { get; init; } = 8;
    /// <summary>Teacher training epochs.</summary>
    public int TeacherEpochs { get; init; } = 30;
    /// <summary>Student training epochs (per loss).</summary>
    public int StudentEpochs { get; init; } = 30;
    /// <summary>Minibatch size.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>AdamW learning rate (teacher and students).</summary>
    public double LearningRate { get; init; } = 1e-2;
    /// <summary>Temperature of Hinton KD (and of dual-head KD's main-head KD term).</summary>
    public double KdTemperature { get; init; } = 4;
    /// <summary>Base temperature of logit-standardized KD.</summary>
    public double LskdTemperature { get; init; } = 2;
    /// <summary>
    /// Temperature of PLD's teacher confidence weights. At 1 the digits teacher's softmax on its own training set is
    /// nearly one-hot, which reduces PLD to cross entropy; 4 (KD's temperature) lets the ranking weigh in.
    /// </summary>
    public double PldTemperature { get; init; } = 4;
    /// <summary>Weight of the distillation term beside cross entropy (KD, LSKD and both dual-head terms).</summary>
    public double KdWeight { get; init; } = 1;
    /// <summary>Seeds 0..Seeds-1 (teacher and student initialisation and batch order; the split is fixed).</summary>
    public int Seeds { get; init; } = 3;
    /// <summary>The objectives to compare, in table order.</summary>
    public IReadOnlyList<StudentLoss> Losses { get; init; } = Enum.GetValues<StudentLoss>();
    /// <summary>Device to train on (the CPU when null).</summary>
    public Device? Device { get; init; }
}

/// <summary>One objective's student test accuracy over the seeds.</summary>
public sealed record DistillRow(StudentLoss Loss, double Mean, double Std, IReadOnlyList<double> Accuracies);

/// <summary>The result of <see cref="DistillationExperiment.Run"/>.</summary>
public sealed record DistillResult(DistillOptions Options, int TrainSize, int TestSize, double TeacherMean, IReadOnlyList<double> TeacherAccuracies, IReadOnlyList<DistillRow> Rows);

/// <summary>
/// A teacher MLP and a small student MLP on the UCI digits (pixels / 16, a fixed 75/25 split): the student is trained
/// with each <see cref="StudentLoss"/> from the same initialisation and batch order, and its test accuracy reported.
/// </summary>
public static class DistillationExperiment
{
    /// <summary>Runs the comparison; <paramref name="progress"/> gets (trainings done, total).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size, epoch count, seed count, rate or temperature is not positive.</exception>
    /// <exception cref="ArgumentException">No loss is listed.</exception>
    public static DistillResult Run(DistillOptions options, Action<int, int>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Positive(options.TeacherHidden, "TeacherHidden"); Positive(options.StudentHidden, "StudentHidden");
        Positive(options.TeacherEpochs, "TeacherEpochs"); Positive(options.StudentEpochs, "StudentEpochs");
        Positive(options.BatchSize, "BatchSize"); Positive(options.Seeds, "Seeds");
        foreach (var (v, name) in new[] { (options.LearningRate, "LearningRate"), (options.KdTemperature, "KdTemperature"), (options.LskdTemperature, "LskdTemperature"), (options.PldTemperature, "PldTemperature") })
            if (!(v > 0) || double.IsInfinity(v)) throw new ArgumentOutOfRangeException(name, v, $"distill: {name} must be positive and finite");
        if (!(options.KdWeight >= 0) || double.IsInfinity(options.KdWeight)) throw new ArgumentOutOfRangeException("KdWeight", options.KdWeight, "distill: KdWeight must be non-negative and finite");
        if (options.Losses.Count == 0) throw new ArgumentException("distill: no loss to compare", nameof(options));

        var device = options.Device ?? Device.Cpu;
        var (x, y) = Datasets.Digits();
        var ((xTrain, yTrain), (xTest, yTest)) = Datasets.TrainTestSplit(x / 16.0, y, 0.25, seed: 0);
        xTrain = xTrain.To(device); yTrain = yTrain.To(device); xTest = xTest.To(device);
        var testLabels = yTest.ToArray<long>();
        int total = options.Seeds * (1 + options.Losses.Count), done = 0;
        var teacherAcc = new List<double>();
        var acc = options.Losses.ToDictionary(l => l, _ => new List<double>());
        for (int seed = 0; seed < options.Seeds; seed++)
        {
            var teacher = new MLP([64, options.TeacherHidden, options.TeacherHidden, 10], generator: new Generator((ulong)(1000 + seed)), device: device);
            Train(teacher.Parameters(), xTrain, options, options.TeacherEpochs, (ulong)(2000 + seed), idx => Losses.CrossEntropy(teacher.Call(xTrain.IndexSelect(0, idx)), yTrain.IndexSelect(0, idx)));
            teacherAcc.Add(Accuracy(teacher, xTest, testLabels));
            progress?.Invoke(++done, total);
            Tensor teacherLogits;
            using (Autograd.NoGrad()) teacherLogits = teacher.Call(xTrain).Detach();
            foreach (var loss in options.Losses)
            {
                acc[loss].Add(TrainStudent(loss, seed, xTrain, yTrain, teacherLogits, xTest, testLabels, options, device));
                progress?.Invoke(++done, total);
            }
        }
        var rows = options.Losses.Select(l => new DistillRow(l, acc[l].Average(), Std(acc[l]), acc[l])).ToList();
        return new DistillResult(options, xTrain.Shape[0], xTest.Shape[0], teacherAcc.Average(), teacherAcc, rows);
    }

    static double TrainStudent(StudentLoss loss, int seed, Tensor xTrain, Tensor yTrain, Tensor teacherLogits, Tensor xTest, long[] testLabels, DistillOptions o, Device device)
    {
        // Both architectures draw the first layer, then the (main) output layer, from the same generator, so every
        // objective starts from the same network; the dual-head student adds its auxiliary head after them.
        var gen = new Generator((ulong)(3000 + seed));
        int h = o.StudentHidden;
        Tensor Teacher(Tensor idx) => teacherLogits.IndexSelect(0, idx);
        Tensor Labels(Tensor idx) => yTrain.IndexSelect(0, idx);
        if (loss == StudentLoss.DualHeadKd)
        {
            var dual = new DualHeadClassifier(new Sequential(new Linear(64, h, true, gen, device: device), new Activation(ActivationKind.Relu)), h, 10, gen, device: device);
            Train(dual.Parameters(), xTrain, o, o.StudentEpochs, (ulong)(4000 + seed), idx =>
            {
                var (main, aux) = dual.Heads(xTrain.IndexSelect(0, idx));
                return Kd.DualHeadKdLoss(main, aux, Teacher(idx), Labels(idx), o.KdTemperature, 1, o.KdWeight, o.KdWeight);
            });
            return Accuracy(dual, xTest, testLabels);
        }
        var student = new MLP([64, h, 10], generator: gen, device: device);
        Train(student.Parameters(), xTrain, o, o.StudentEpochs, (ulong)(4000 + seed), idx =>
        {
            var s = student.Call(xTrain.IndexSelect(0, idx));
            var t = Teacher(idx); var yb = Labels(idx);
            return loss switch
            {
                StudentLoss.CrossEntropy => Losses.CrossEntropy(s, yb),
                StudentLoss.Kd => Losses.CrossEntropy(s, yb) + Kd.KdLoss(s, t, o.KdTemperature) * o.KdWeight,
                StudentLoss.LogitStandardizedKd => Losses.CrossEntropy(s, yb) + Kd.LogitStandardizedKd(s, t, o.LskdTemperature) * o.KdWeight,
                StudentLoss.Pld => Kd.PlackettLuceLoss(s, t, yb, o.PldTemperature),
                _ => throw new ArgumentOutOfRangeException(nameof(loss), loss, "distill: unknown loss"),
            };
        });
        return Accuracy(student, xTest, testLabels);
    }

    // AdamW over shuffled minibatches; the batch order depends only on the seed.
    static void Train(IEnumerable<Parameter> parameters, Tensor xTrain, DistillOptions o, int epochs, ulong seed, Func<Tensor, Tensor> batchLoss)
    {
        var opt = new AdamW(parameters, o.LearningRate, weightDecay: 0);
        var gen = new Generator(seed);
        int n = xTrain.Shape[0];
        for (int e = 0; e < epochs; e++)
        {
            var perm = Tensor.RandPerm(n, gen).To(xTrain.Device);
            for (int start = 0; start < n; start += o.BatchSize)
            {
                var idx = perm.Narrow(0, start, Math.Min(o.BatchSize, n - start));
                opt.ZeroGrad();
                batchLoss(idx).Backward();
                opt.Step();
            }
        }
    }

    static double Accuracy(Module<Tensor, Tensor> model, Tensor x, long[] labels)
    {
        long[] pred;
        using (Autograd.NoGrad()) pred = model.Call(x).ArgMax(1).ToArray<long>();
        return pred.Zip(labels).Count(p => p.First == p.Second) / (double)labels.Length;
    }

    static double Std(List<double> v)
    {
        if (v.Count < 2) return 0;
        double m = v.Average();
        return Math.Sqrt(v.Sum(a => (a - m) * (a - m)) / (v.Count - 1));
    }

    static void Positive(int v, string name)
    {
        if (v <= 0) throw new ArgumentOutOfRangeException(name, v, $"distill: {name} must be positive");
    }
}
