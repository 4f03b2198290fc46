using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Tokenizers;
using Spectre.Console;
using Spectre.Console.Cli;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>
/// <c>gqa generate</c>: streams a continuation from a checkpoint to standard output (text, or comma-separated ids), then
/// prints speed and cache size to standard error.
/// </summary>
public sealed class GenerateCommand(IAnsiConsole console, ErrorConsole errors) : Command<GenerateCommand.Settings>
{
    /// <summary>Options of <c>gqa generate</c>.</summary>
    public sealed class Settings : GqaSettings
    {
        /// <summary>Checkpoint directory.</summary>
        [CommandOption("--model <DIR>")][Description("Checkpoint directory (config.json + safetensors).")]
        public string? Model { get; init; }

        /// <summary>Prompt text.</summary>
        [CommandOption("--prompt <TEXT>")][Description("Prompt text (needs --tokenizer).")]
        public string? Prompt { get; init; }

        /// <summary>Tokenizer file.</summary>
        [CommandOption("--tokenizer <FILE>")][Description("tokenizer.json, tokenizer.model, a .tiktoken file, or a directory holding one (or vocab.json + merges.txt).")]
        public string? Tokenizer { get; init; }

        /// <summary>Prompt token ids.</summary>
        [CommandOption("--ids <LIST>")][Description("Prompt token ids, comma-separated.")]
        public string? Ids { get; init; }

        /// <summary>Tokens to generate.</summary>
        [CommandOption("--max-new|--max-new-tokens <N>")][Description("Most new tokens (HF's max_new_tokens). Default 64.")][DefaultValue(64)]
        public int MaxNew { get; init; } = 64;

        /// <summary>Temperature.</summary>
        [CommandOption("--temperature <T>")][Description("0 (default) is greedy.")][DefaultValue(0.0)]
        public double Temperature { get; init; }

        /// <summary>Top-k.</summary>
        [CommandOption("--top-k <K>")][Description("Sample among the k most likely tokens; 0 is off.")][DefaultValue(0)]
        public int TopK { get; init; }

        /// <summary>Top-p.</summary>
        [CommandOption("--top-p <P>")][Description("Nucleus sampling mass; 1 is off.")][DefaultValue(1.0)]
        public double TopP { get; init; } = 1.0;

        /// <summary>Repetition penalty.</summary>
        [CommandOption("--repetition-penalty <X>")][Description("1 is off.")][DefaultValue(1.0)]
        public double RepetitionPenalty { get; init; } = 1.0;

        /// <summary>Frequency penalty.</summary>
        [CommandOption("--frequency-penalty <X>")][Description("Lower each generated token's logit by X per time generated (OpenAI's, vLLM's), from -2 to 2; 0 is off.")][DefaultValue(0.0)]
        public double FrequencyPenalty { get; init; }

        /// <summary>Presence penalty.</summary>
        [CommandOption("--presence-penalty <X>")][Description("Lower the logit of every token generated so far by X, from -2 to 2; 0 is off.")][DefaultValue(0.0)]
        public double PresencePenalty { get; init; }

        /// <summary>Seed.</summary>
        [CommandOption("--seed <N>")][Description("Seed for reproducible sampling.")]
        public ulong? Seed { get; init; }

        /// <summary>Device.</summary>
        [CommandOption("--device <DEVICE>")][Description("cpu (default) or cuda.")][DefaultValue("cpu")]
        public string Device { get; init; } = "cpu";

        /// <summary>Device map.</summary>
        [CommandOption("--device-map <MAP>")][Description("Spread the model over devices instead of --device: auto, or DEVICE=LAYERS pairs such as cuda:0=12,cpu=10.")]
        public string? DeviceMap { get; init; }

        /// <summary>Element type.</summary>
        [CommandOption("--dtype <DTYPE>")][Description("bf16 (default: half the memory of fp32, and on a CPU faster than fp16), fp16, or fp32 (closest to a float32 reference).")][DefaultValue("bf16")]
        public string Dtype { get; init; } = "bf16";

        /// <summary>Element type of the KV cache; null for the model's.</summary>
        [CommandOption("--cache-dtype <DTYPE>")][Description("KV cache dtype: fp32, bf16 or fp16. Default: the model's (--dtype).")]
        public string? CacheDtype { get; init; }

        /// <summary>CUDA graphs.</summary>
        [CommandOption("--cuda-graphs <on|off>")][Description("On CUDA, replay each decode step from a CUDA graph: on (default) or off.")][DefaultValue("on")]
        public string CudaGraphs { get; init; } = "on";

        /// <summary>No speed table on standard error.</summary>
        [CommandOption("--quiet")][Description("Print only the continuation: no speed table, no warnings.")]
        public bool Quiet { get; init; }

        /// <summary>The library's names of the sampling options, and the options that set them.</summary>
        internal static readonly Dictionary<string, string> OptionNames = new()
        {
            [nameof(GenerationOptions.MaxNewTokens)] = "--max-new-tokens", [nameof(GenerationOptions.Temperature)] = "--temperature",
            [nameof(GenerationOptions.TopK)] = "--top-k", [nameof(GenerationOptions.TopP)] = "--top-p",
            [nameof(GenerationOptions.RepetitionPenalty)] = "--repetition-penalty",
            [nameof(GenerationOptions.FrequencyPenalty)] = "--frequency-penalty", [nameof(GenerationOptions.PresencePenalty)] = "--presence-penalty",
        };

        /// <summary>The generation options these settings ask for.</summary>
        internal GenerationOptions ToOptions() => new()
        {
            MaxNewTokens = MaxNew, Temperature = Temperature, TopK = TopK, TopP = TopP, RepetitionPenalty = RepetitionPenalty,
            FrequencyPenalty = FrequencyPenalty, PresencePenalty = PresencePenalty, Seed = Seed,
            UseCudaGraphs = Parsing.OnOff(CudaGraphs, "--cuda-graphs"),
        };

        /// <inheritdoc />
        public override ValidationResult Validate()
        {
            if (string.IsNullOrEmpty(Model)) return ValidationResult.Error("--model DIR is required.");
            if (CudaGraphs is not ("on" or "off")) return ValidationResult.Error($"--cuda-graphs must be on or off, but was '{CudaGraphs}'.");
            if (DeviceMap is not null && Device != "cpu") return ValidationResult.Error("Give --device or --device-map, not both.");
            try
            {
                ToOptions().Validate();
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error(Parsing.Message(e, OptionNames));
            }
            if ((Prompt is null) == (Ids is null)) return ValidationResult.Error("Give either --prompt TEXT (with --tokenizer FILE) or --ids 1,2,3.");
            if (Prompt is not null && Tokenizer is null) return ValidationResult.Error("--prompt needs --tokenizer FILE.");
            return ValidationResult.Success();
        }
    }

    /// <inheritdoc />
    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var options = settings.ToOptions();
        var dtype = Parsing.Dtype(settings.Dtype);
        var cacheDtype = settings.CacheDtype is null ? dtype : Parsing.Dtype(settings.CacheDtype);
        Tokenizer? tokenizer = settings.Tokenizer is null ? null : TextGeneration.LoadTokenizer(settings.Tokenizer);
        IReadOnlyList<int> prompt = tokenizer is not null
            ? tokenizer.EncodeToIds(settings.Prompt!)
            : Parsing.Ids(settings.Ids!, "--ids");
        if (prompt.Count == 0) throw new ArgumentException("The prompt holds no token.");

        using var model = Parsing.LoadModel(settings.Model!, dtype, settings.Device, settings.DeviceMap, 1, prompt.Count + options.MaxNewTokens);
        if (tokenizer is null) Parsing.CheckIds(prompt, model.Config.VocabSize, "--ids");
        var device = model.Device;
        if (device.type == TorchSharp.DeviceType.CUDA && options.UseCudaGraphs && settings.DeviceMap is null && !settings.Quiet)
            errors.Console.MarkupLineInterpolated($"[grey]CUDA graphs: {GqaTransformer.CudaGraphs.UnavailableReason ?? "on"}[/]");
        options = WithinPositions(options, prompt.Count, model.Config.MaxPositionEmbeddings, settings.Quiet);
        using var generator = new TokenGenerator(model);
        using var cache = model.CreateCache(1, Math.Max(1, prompt.Count + options.MaxNewTokens - 1), cacheDtype);
        var produced = new List<int>();
        var clock = Stopwatch.StartNew();
        double firstTokenSeconds = 0;
        var detokenizer = tokenizer is null ? null : new StreamingDetokenizer(ids => tokenizer.Decode(ids) ?? "");
        foreach (var step in generator.StreamBatch([prompt], options, cache, cancellationToken))
        {
            if (produced.Count == 0) firstTokenSeconds = clock.Elapsed.TotalSeconds;
            produced.Add(step[0]!.Value);
            if (detokenizer is not null)
            {
                if (detokenizer.Add(step[0]!.Value) is { Length: > 0 } piece) console.WritePlain(piece);
            }
            else
            {
                console.WritePlain((produced.Count > 1 ? "," : "") + step[0]!.Value.ToString(CultureInfo.InvariantCulture));
            }
        }
        double total = clock.Elapsed.TotalSeconds;
        console.WritePlainLine();
        if (settings.Quiet) return 0;

        long cacheBytes = KvCache.EstimateBytes(model.Config, 1, prompt.Count + produced.Count - 1, cacheDtype);
        var table = Tables.Create().AddColumn(Tables.Right("prompt")).AddColumn(Tables.Right("prefill tok/s"))
            .AddColumn(Tables.Right("new")).AddColumn(Tables.Right("decode tok/s")).AddColumn(Tables.Right("KV cache"));
        double decodeSeconds = total - firstTokenSeconds;
        table.AddRow(
            prompt.Count.ToString(CultureInfo.InvariantCulture),
            (prompt.Count / firstTokenSeconds).ToString("0.0", CultureInfo.InvariantCulture),
            produced.Count.ToString(CultureInfo.InvariantCulture),
            produced.Count > 1 ? ((produced.Count - 1) / decodeSeconds).ToString("0.0", CultureInfo.InvariantCulture) : "-",
            Parsing.Size(cacheBytes));
        errors.Console.Write(table);
        errors.Console.MarkupLineInterpolated($"[grey]KV cache: {Parsing.KvHeads(model.Config.NumKeyValueHeads)}, {Parsing.DtypeName(cacheDtype)}.[/]");
        if (settings.DeviceMap is not null)
            errors.Console.MarkupLineInterpolated($"[grey]Device map: {model.DeviceMap} (CUDA graphs off across devices).[/]");
        return 0;
    }

    /// <summary>
    /// Positions past <c>max_position_embeddings</c> were never trained; transformers warns there, and we stop there,
    /// saying so on standard error.
    /// </summary>
    private GenerationOptions WithinPositions(GenerationOptions options, int promptTokens, int maxPositions, bool quiet)
    {
        if (promptTokens >= maxPositions)
            throw new ArgumentException($"The prompt holds {promptTokens} tokens, but the model's max_position_embeddings is {maxPositions}.");
        int room = maxPositions - promptTokens;
        if (options.MaxNewTokens <= room) return options;
        if (!quiet)
            errors.Console.WriteWarning(
                $"{promptTokens} prompt tokens + --max-new-tokens {options.MaxNewTokens} pass the model's max_position_embeddings ({maxPositions}); stopping after {room} new tokens.");
        return options with { MaxNewTokens = room };
    }
}
