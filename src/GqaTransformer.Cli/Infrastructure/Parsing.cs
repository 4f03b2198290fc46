using System.Globalization;
using static TorchSharp.torch;

namespace GqaTransformer.Cli;

/// <summary>Parsers for the command-line's value formats. Each throws <see cref="ArgumentException"/> with a one-line message.</summary>
internal static class Parsing
{
    /// <summary>
    /// An exception's message for a person at a terminal: without .NET's " (Parameter 'x')" and "Actual value was"
    /// suffixes, and with a library property named by the option that set it (<paramref name="options"/>: property → option).
    /// </summary>
    public static string Message(Exception exception, IReadOnlyDictionary<string, string>? options = null)
    {
        string message = exception.Message;
        if (exception is ArgumentException argument)
        {
            message = System.Text.RegularExpressions.Regex.Replace(message, @"\s*\(Parameter '[^']*'\)", "");
            message = System.Text.RegularExpressions.Regex.Replace(message, @"\s*Actual value was [^\n]*", "");
            if (options is not null && argument.ParamName is { } name && options.TryGetValue(name, out var option) && message.StartsWith(name, StringComparison.Ordinal))
                message = option + message[name.Length..];
        }
        return message.Trim();
    }

    public static long Bytes(string text)
    {
        var units = new (string Suffix, long Factor)[]
        {
            ("TiB", 1L << 40), ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10),
            ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1),
        };
        string trimmed = text.Trim();
        foreach (var (suffix, factor) in units)
            if (trimmed.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                string number = trimmed[..^suffix.Length].Trim();
                if (double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && value >= 0)
                    return (long)(value * factor);
                break;
            }
        if (long.TryParse(trimmed, NumberStyles.Integer, CultureInfo.InvariantCulture, out long plain) && plain >= 0) return plain;
        throw new ArgumentException($"'{text}' is not a size; write it like 24GiB, 512MiB or 80GB.");
    }

    public static int[] IntList(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            string p = parts[i];
            int multiplier = 1;
            if (p.EndsWith('k') || p.EndsWith('K')) { multiplier = 1024; p = p[..^1]; }
            if (!int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) || v < 0 || (long)v * multiplier > int.MaxValue)
                throw new ArgumentException($"{option} must be a comma-separated list of non-negative integers (4096 or 4k), but got '{text}'.");
            values[i] = v * multiplier;
        }
        if (values.Length == 0) throw new ArgumentException($"{option} is empty.");
        return values;
    }

    /// <summary>
    /// Token ids written as 1,2,3: each a non-negative integer (checked against a vocabulary by <see cref="CheckIds"/>
    /// once the model's is known).
    /// </summary>
    public static int[] Ids(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new ArgumentException($"{option}: '{parts[i]}' is not a token id; ids must be non-negative integers below the model's vocabulary size, comma-separated (1,2,3).");
        return ids;
    }

    /// <summary>Throws, naming the first id of <paramref name="ids"/> outside <c>[0, vocabSize)</c>, before any forward.</summary>
    public static void CheckIds(IEnumerable<int> ids, int vocabSize, string option)
    {
        foreach (int id in ids)
            if (id < 0 || id >= vocabSize)
                throw new ArgumentException($"{option}: token id {id} is outside the model's vocabulary; ids must be non-negative and below its size, {vocabSize}.");
    }

    /// <summary>
    /// <paramref name="path"/> if it is a directory; otherwise an error that says whether it is a file or missing and what
    /// the directory should hold (<paramref name="holds"/>).
    /// </summary>
    public static string ModelDirectory(string path, string holds = "config.json and *.safetensors", string option = "--model")
    {
        if (File.Exists(path)) throw new ArgumentException($"{option}: '{path}' is a file; a model directory (with {holds}) was expected.");
        if (!Directory.Exists(path)) throw new ArgumentException($"{option}: directory '{path}' does not exist; a model directory (with {holds}) was expected.");
        return path;
    }

    public static ScalarType Dtype(string text) => text.ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "f16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"dtype '{text}' is not supported; use fp32, bf16 or fp16."),
    };

    public static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        _ => "fp32",
    };

    /// <summary>
    /// Loads a checkpoint on <paramref name="device"/>, or spread as <paramref name="deviceMap"/> says: <c>auto</c> (fitted to
    /// the GPUs' free memory with a <paramref name="batch"/> × <paramref name="capacity"/> cache) or DEVICE=LAYERS pairs.
    /// </summary>
    public static DecoderModel LoadModel(string directory, ScalarType dtype, string device, string? deviceMap, int batch = 1, int capacity = 4096)
    {
        ModelDirectory(directory);
        if (deviceMap is null) return DecoderModel.FromPretrained(directory, dtype, Device(device));
        var config = DecoderConfig.FromFile(Path.Combine(directory, "config.json"));
        if (deviceMap.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return DecoderModel.FromPretrained(directory, dtype, DeviceMap.Auto(config, dtype, batch, Math.Min(capacity, config.MaxPositionEmbeddings)));
        var map = DeviceMap.Parse(deviceMap, config.NumHiddenLayers);
        foreach (var part in map.Layers.Append(map.Embedding).Append(map.Head))
            if (part.type == TorchSharp.DeviceType.CUDA && !TorchSharp.torch.cuda.is_available())
                throw new ArgumentException($"--device-map '{deviceMap}' names CUDA, but TorchSharp finds no CUDA device.");
        return DecoderModel.FromPretrained(directory, dtype, map);
    }

    public static Device Device(string text)
    {
        string lower = text.ToLowerInvariant();
        if (lower == "cpu") return CPU;
        if (lower.StartsWith("cuda"))
        {
            if (!TorchSharp.torch.cuda.is_available())
                throw new ArgumentException("--device cuda was asked for, but TorchSharp finds no CUDA device (is a CUDA libtorch on the library path?).");
            return new Device(lower);
        }
        throw new ArgumentException($"device '{text}' is not supported; use cpu or cuda.");
    }

    /// <summary>
    /// The token ids of the text at <paramref name="path"/> for <paramref name="config"/>'s model: its tokenizer's, or UTF-8
    /// bytes, which need a vocabulary of 256 or more (checked here, before any forward).
    /// </summary>
    public static IEnumerable<int> Text(string path, DecoderConfig config, Microsoft.ML.Tokenizers.Tokenizer? tokenizer)
    {
        if (tokenizer is null && config.VocabSize < 256)
            throw new ArgumentException($"Without a tokenizer the text is read as bytes, which needs a vocabulary of 256 or more; this model's is {config.VocabSize}.");
        return TextTokens.Read(path, tokenizer);
    }

    /// <summary>on → true, off → false.</summary>
    public static bool OnOff(string text, string option) => text switch
    {
        "on" => true,
        "off" => false,
        _ => throw new ArgumentException($"{option} must be on or off, but was '{text}'."),
    };

    /// <summary>"1 kv head", "8 kv heads".</summary>
    public static string KvHeads(int count) => count == 1 ? "1 kv head" : $"{count} kv heads";

    /// <summary>A context length as people write it: 4k for 4096, 1,000 for 1000.</summary>
    public static string Tokens(int count) => count >= 1024 && count % 1024 == 0 ? $"{count / 1024}k" : count.ToString("N0", CultureInfo.InvariantCulture);

    public static string Size(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (value >= 1024 && unit < units.Length - 1) { value /= 1024; unit++; }
        return unit == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{value:0.##} {units[unit]}");
    }
}
