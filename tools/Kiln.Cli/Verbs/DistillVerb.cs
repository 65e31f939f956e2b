using System.CommandLine;
using Kiln.Methods.Distillation;
using Spectre.Console;

namespace Kiln.Cli;

/// <summary>`kiln distill`: a teacher MLP and a small student on the digits, the student trained with CE, KD, logit-standardized KD, PLD and dual-head KD side by side.</summary>
public static class DistillVerb
{
    static readonly (string Name, StudentLoss Loss)[] Names =
        [("ce", StudentLoss.CrossEntropy), ("kd", StudentLoss.Kd), ("lskd", StudentLoss.LogitStandardizedKd), ("pld", StudentLoss.Pld), ("dhkd", StudentLoss.DualHeadKd)];

    static string Name(StudentLoss l) => Names.First(n => n.Loss == l).Name;

    public static Command Build()
    {
        var cmd = new Command("distill", "Knowledge distillation on the digits: student test accuracy with cross entropy, KD, logit-standardized KD, PLD and dual-head KD");
        var losses = new Option<string>("--losses") { Description = "Objectives, comma-separated: ce, kd, lskd, pld, dhkd", DefaultValueFactory = _ => "ce,kd,lskd,pld,dhkd" };
        var epochs = new Option<int>("--epochs") { Description = "Student training epochs", DefaultValueFactory = _ => 30 };
        var teacherEpochs = new Option<int>("--teacher-epochs") { Description = "Teacher training epochs", DefaultValueFactory = _ => 30 };
        var studentHidden = new Option<int>("--student-hidden") { Description = "Student hidden width (64 -> h -> 10)", DefaultValueFactory = _ => 8 };
        var teacherHidden = new Option<int>("--teacher-hidden") { Description = "Teacher hidden width (64 -> h -> h -> 10)", DefaultValueFactory = _ => 128 };
        var seeds = new Option<int>("--seeds") { Description = "Seeds (initialisation and batch order; the split is fixed)", DefaultValueFactory = _ => 3 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => 1e-2 };
        var pldTemperature = new Option<double>("--pld-temperature") { Description = "Temperature of PLD's teacher confidence weights", DefaultValueFactory = _ => 4 };
        var kdWeight = new Option<double>("--kd-weight") { Description = "Weight of the distillation term beside cross entropy", DefaultValueFactory = _ => 1 };
        var plot = new Option<string?>("--plot") { Description = "Bar chart PNG to write (default: distill.png, or none with --json)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object on standard output" };
        var device = Cli.DeviceOption();
        foreach (var o in new Option[] { losses, epochs, teacherEpochs, studentHidden, teacherHidden, seeds, lr, pldTemperature, kdWeight, plot, json, device }) cmd.Options.Add(o);
        cmd.SetAction(p =>
        {
            string? png = Cli.PlotPath(p, plot, json, "distill.png");
            var list = p.GetValue(losses)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(s => Names.FirstOrDefault(n => n.Name == s) is { Name: not null } hit ? hit.Loss : throw new ArgumentException($"--losses: unknown loss '{s}' (use ce, kd, lskd, pld, dhkd)"))
                .ToList();
            if (list.Count == 0) throw new ArgumentException("--losses: name at least one loss");
            foreach (var (v, name) in new[] { (p.GetValue(epochs), "--epochs"), (p.GetValue(teacherEpochs), "--teacher-epochs"), (p.GetValue(studentHidden), "--student-hidden"), (p.GetValue(teacherHidden), "--teacher-hidden"), (p.GetValue(seeds), "--seeds") })
                Cli.Positive(v, name);
            Cli.PositiveFinite(p.GetValue(lr), "--lr");
            Cli.PositiveFinite(p.GetValue(pldTemperature), "--pld-temperature");
            if (!(p.GetValue(kdWeight) >= 0)) throw new ArgumentException($"--kd-weight: {p.GetValue(kdWeight)} is negative");
            using var lease = Cli.OpenDevice(p, device);
            var options = new DistillOptions
            {
                Losses = list, StudentEpochs = p.GetValue(epochs), TeacherEpochs = p.GetValue(teacherEpochs), StudentHidden = p.GetValue(studentHidden),
                TeacherHidden = p.GetValue(teacherHidden), Seeds = p.GetValue(seeds), LearningRate = p.GetValue(lr), PldTemperature = p.GetValue(pldTemperature), KdWeight = p.GetValue(kdWeight), Device = lease.Device,
            };
            int total = options.Seeds * (1 + list.Count);
            var result = Cli.Progress("distill", total, tick => DistillationExperiment.Run(options, (done, _) => tick(done)));
            Report(result, p.GetValue(json));
            Cli.SavePlot(png, file => Plot(result, file));
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints the table (stderr) or the JSON object (stdout).</summary>
    public static void Report(DistillResult r, bool json)
    {
        if (json)
        {
            Cli.JsonLine(new
            {
                train = r.TrainSize, test = r.TestSize, seeds = r.Options.Seeds, student_hidden = r.Options.StudentHidden, teacher_hidden = r.Options.TeacherHidden,
                epochs = r.Options.StudentEpochs, pld_temperature = r.Options.PldTemperature, teacher_epochs = r.Options.TeacherEpochs, teacher_accuracy = r.TeacherMean, teacher_accuracies = r.TeacherAccuracies,
                rows = r.Rows.Select(x => new { loss = Name(x.Loss), accuracy = x.Mean, std = x.Std, accuracies = x.Accuracies }).ToArray(),
            });
            return;
        }
        Cli.Err.WriteLine($"digits: {r.TrainSize} train / {r.TestSize} test; teacher 64-{r.Options.TeacherHidden}-{r.Options.TeacherHidden}-10, student 64-{r.Options.StudentHidden}-10; {r.Options.Seeds} seeds");
        var t = new Table().AddColumns("student loss", "test accuracy % (mean ± sd)", "per seed");
        t.AddRow("teacher (CE)", $"{r.TeacherMean * 100:F2} ± {Sd(r.TeacherAccuracies) * 100:F2}", string.Join(" ", r.TeacherAccuracies.Select(a => $"{a * 100:F2}")));
        foreach (var x in r.Rows)
            t.AddRow(Name(x.Loss), $"{x.Mean * 100:F2} ± {x.Std * 100:F2}", string.Join(" ", x.Accuracies.Select(a => $"{a * 100:F2}")));
        Cli.Err.Write(t);
    }

    static double Sd(IReadOnlyList<double> v)
    {
        if (v.Count < 2) return 0;
        double m = v.Average();
        return Math.Sqrt(v.Sum(a => (a - m) * (a - m)) / (v.Count - 1));
    }

    /// <summary>Bar chart of student test accuracy per loss (error bars: one standard deviation over seeds), with the teacher as a line.</summary>
    public static void Plot(DistillResult r, string path)
    {
        var plt = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = r.Rows.Select((x, i) => new ScottPlot.Bar { Position = i, Value = x.Mean * 100, Error = x.Std * 100, FillColor = palette.GetColor(i) }).ToList();
        plt.Add.Bars(bars);
        var teacher = plt.Add.HorizontalLine(r.TeacherMean * 100);
        teacher.LinePattern = ScottPlot.LinePattern.Dashed;
        teacher.LegendText = $"teacher {r.TeacherMean * 100:F2}%";
        plt.Axes.Bottom.SetTicks(r.Rows.Select((_, i) => (double)i).ToArray(), r.Rows.Select(x => Name(x.Loss)).ToArray());
        double lo = Math.Min(r.Rows.Min(x => x.Mean - x.Std), r.TeacherMean) * 100;
        plt.Axes.SetLimitsY(Math.Max(0, lo - 3), 100);
        plt.Axes.Left.Label.Text = "student test accuracy (%)";
        plt.Title($"digits: student 64-{r.Options.StudentHidden}-10 distilled from a 64-{r.Options.TeacherHidden}-{r.Options.TeacherHidden}-10 teacher ({r.Options.Seeds} seeds)");
        plt.ShowLegend();
        plt.SavePng(path, 800, 500);
    }
}
