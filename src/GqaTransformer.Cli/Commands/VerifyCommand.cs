using System.ComponentModel;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa verify</c>: loads a checkpoint, runs the reference's input_ids (with its attention_mask and position_ids, if
/// any) and greedy-decodes its gen_prompt, and compares with what transformers computed. Exit 0 when both agree within
/// the tolerance, 1 when not, 2 on bad input.
/// </summary>
public sealed class VerifyCommand(IAnsiConsole console) : Command<VerifyCommand.Settings>
{
    /// <summary>Exit code when the model disagrees with the reference.</summary>
    public const int Mismatch = 1;

    /// <summary>Options of <c>gqa verify</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Checkpoint directory.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory (config.json + safetensors).")]
        public string? Model { get; init; }

        /// <summary>Reference file.</summary>
        [CommandOption("--reference <FILE>")][Description("Safetensors file with input_ids, logits and optionally attention_mask, position_ids, gen_prompt, gen_tokens, gen_attention_mask.")]
        public string? Reference { get; init; }

        /// <summary>Tolerance on the logits.</summary>
        [CommandOption("--tolerance <X>")][Description("Largest allowed |logits - reference|. Default 1e-4.")][DefaultValue(1e-4)]
        public double Tolerance { get; init; } = 1e-4;

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <summary>Device map.</summary>
        [CommandOption("--device-map <MAP>")][Description("Spread the model over devices instead of --device: auto, or DEVICE=LAYERS pairs such as cuda:0=12,cpu=10.")]
        public string? DeviceMap { get; init; }

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("fp32 (default), bf16 or fp16; half precision needs a looser --tolerance.")][DefaultValue("fp32")]
        public string Dtype { get; init; } = "fp32";

        /// <summary>CUDA graphs.</summary>
        [CommandOption("--cuda-graphs <on|off>")][Description("On CUDA, replay each decode step from a CUDA graph: on (default) or off.")][DefaultValue("on")]
        public string CudaGraphs { get; init; } = "on";

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (CudaGraphs is not ("on" or "off")) return ValidationResult.Error($"--cuda-graphs must be on or off, but was '{CudaGraphs}'.");
            if (string.IsNullOrEmpty(Model)) return ValidationResult.Error("--model DIR is required.");
            if (string.IsNullOrEmpty(Reference)) return ValidationResult.Error("--reference FILE is required.");
            if (!(Tolerance >= 0)) return ValidationResult.Error($"--tolerance must be non-negative, but was {Tolerance}.");
            if (DeviceMap is not null && Device != "cpu") return ValidationResult.Error("Give --device or --device-map, not both.");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Parsing.ModelDirectory(settings.Model!);
        using var scope = NewDisposeScope();
        using var reference = SafetensorsFile.Open(settings.Reference!);
        foreach (var required in new[] { "input_ids", "logits" })
            if (!reference.Entries.ContainsKey(required))
                throw new InvalidDataException($"'{settings.Reference}' has no '{required}' tensor.");
        using var model = Parsing.LoadModel(settings.Model!, Parsing.Dtype(settings.Dtype), settings.Device, settings.DeviceMap);
        var device = model.Device; // the embedding's: inputs go there

        var ids = reference.Read("input_ids", ScalarType.Int64, device);
        var expected = reference.Read("logits", ScalarType.Float32);
        var mask = reference.Entries.ContainsKey("attention_mask") ? reference.Read("attention_mask", ScalarType.Int64) : null;
        var positions = reference.Entries.ContainsKey("position_ids") ? reference.Read("position_ids", ScalarType.Int64, device) : null;
        var logits = model.forward(ids, null, mask?.to(device), positions).to(ScalarType.Float32, CPU);
        if (!logits.shape.SequenceEqual(expected.shape))
            throw new InvalidDataException($"The model's logits are [{string.Join(", ", logits.shape)}] but the reference's are [{string.Join(", ", expected.shape)}].");
        var difference = (logits - expected).abs();
        if (mask is not null) difference = difference * mask.unsqueeze(-1).to(ScalarType.Float32); // padding is not compared
        double maxDifference = difference.max().item<float>();
        bool logitsOk = maxDifference <= settings.Tolerance;

        bool? tokensOk = null;
        string tokenDetail = "no gen_prompt in the reference";
        if (reference.Entries.ContainsKey("gen_prompt") && reference.Entries.ContainsKey("gen_tokens"))
            (tokensOk, tokenDetail) = CompareGreedy(model, reference, settings.CudaGraphs == "on", cancellationToken);

        var table = Tables.Create().AddColumn(Tables.Left("check")).AddColumn(Tables.Left("result")).AddColumn("");
        table.AddRow("max |logits - reference|", maxDifference.ToString("0.###E+0", CultureInfo.InvariantCulture),
            logitsOk ? $"[green]within {settings.Tolerance.ToString(CultureInfo.InvariantCulture)}[/]" : $"[red]above {settings.Tolerance.ToString(CultureInfo.InvariantCulture)}[/]");
        table.AddRow("device, dtype", $"{(settings.DeviceMap is null ? model.Device : model.DeviceMap)}, {Parsing.DtypeName(model.Dtype)}", "");
        table.AddRow("greedy tokens", Markup.Escape(tokenDetail), tokensOk switch { true => "[green]match[/]", false => "[red]differ[/]", null => "[grey]skipped[/]" });
        console.Write(table);
        bool ok = logitsOk && tokensOk != false;
        console.MarkupLine(ok ? "[green]PASS[/]" : "[red]FAIL[/]");
        return ok ? 0 : Mismatch;
    }

    private static (bool, string) CompareGreedy(DecoderModel model, SafetensorsFile reference, bool cudaGraphs, CancellationToken cancellationToken)
    {
        var prompt = reference.Read("gen_prompt", ScalarType.Int64);
        var want = reference.Read("gen_tokens", ScalarType.Int64);
        var mask = reference.Entries.ContainsKey("gen_attention_mask") ? reference.Read("gen_attention_mask", ScalarType.Int64) : null;
        int promptLength = (int)prompt.shape[1], newTokens = (int)(want.shape[1] - prompt.shape[1]);
        if (newTokens <= 0 || want.shape[0] != prompt.shape[0])
            throw new InvalidDataException($"gen_tokens [{string.Join(", ", want.shape)}] must extend gen_prompt [{string.Join(", ", prompt.shape)}].");
        var prompts = new List<IReadOnlyList<int>>();
        for (int b = 0; b < prompt.shape[0]; b++)
        {
            var row = prompt[b].data<long>().ToArray();
            var real = mask?[b].data<long>().ToArray();
            prompts.Add(row.Where((_, i) => real is null || real[i] == 1).Select(t => (int)t).ToArray());
        }
        using var generator = new TokenGenerator(model);
        var generated = generator.Generate(prompts, new GenerationOptions { MaxNewTokens = newTokens, StopTokenIds = [], UseCudaGraphs = cudaGraphs }, cancellationToken: cancellationToken);
        int matching = 0, total = 0;
        for (int b = 0; b < prompts.Count; b++)
        {
            var expected = want[b].data<long>().Skip(promptLength).Select(t => (int)t).ToArray();
            for (int i = 0; i < expected.Length; i++, total++)
                if (i < generated[b].Count && generated[b][i] == expected[i]) matching++;
        }
        return (matching == total, $"{matching}/{total} tokens equal");
    }
}
