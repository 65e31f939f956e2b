using System.CommandLine;
using Kiln.Cli;

// `kiln <verb> [sub-verb] [options]`. Each verb lives in its own file under Verbs/ and adds itself here.
var root = new RootCommand("kiln: a tensor and autodiff engine for .NET, its benchmarks, kernel validation and method reproductions");
foreach (var verb in new[]
{
    TourVerb.Build(),
    BenchVerb.Build(),
    ValidateVerb.Build(),
    EmitVerb.Build(),
    RewardVerb.Build(),
    LmVerb.Build(),
    LoopVerb.Build(),
    TrainLmVerb.Build(),
    AllReduceBenchVerb.Build(),
    SmoothVerb.Build(),
    DistillVerb.Build(),
    BoundsVerb.Build(),
    VqVerb.Build(),
    SslVerb.Build(),
    OptimVerb.Build(),
    MergeVerb.Build(),
    RlVerb.Build(),
    SketchVerb.Build(),
    CertifyVerb.Build(),
    CalibrateVerb.Build(),
    SeqVerb.Build(),
})
    root.Subcommands.Add(verb);
return Cli.Run(root, args);
