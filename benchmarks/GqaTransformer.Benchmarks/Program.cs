using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using GqaTransformer.Benchmarks;
using GqaTransformer.Benchmarks.Report;

// `report`: the benchmark command that measures everything in one run and writes docs/benchmarks.md with its charts.
if (args.Length > 0 && args[0] == "report") return ReportCommand.Run(args[1..]);
if (args.Length > 0 && args[0] == "migration-plot") return MigrationPlot.Run(args[1..]);
if (args.Length > 0 && args[0] == "family-decode") return FamilyDecodeRatios.Run(args[1..]);

// Otherwise BenchmarkDotNet. In-process: the benchmarks run in this process, whose libLibTorchSharp.so the build has
// already patched (an out-of-process toolchain would build and load its own copy).
var config = DefaultConfig.Instance
    .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("InProcess"))
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
return 0;
