using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Kiln.Bench -- --filter '*MlpTrainStep*'
BenchmarkSwitcher.FromAssembly(typeof(MlpTrainStepBench).Assembly).Run(args);
