using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>Reads and writes HuggingFace-layout checkpoint directories (config.json + safetensors, sharded or not).</summary>
internal static class PretrainedCheckpoint
{
    public const string ConfigFile = "config.json";
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    public static DecoderModel Load(string directory, ScalarType dtype, Device? device, DeviceMap? deviceMap)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"Model directory '{directory}' does not exist.");
        device ??= CPU;
        if (!Guard.IsFloatingPoint(dtype))
            throw new ArgumentException($"dtype must be a floating-point type, but was {dtype}.", nameof(dtype));
        var config = DecoderConfig.FromFile(Path.Combine(directory, ConfigFile));
        if (deviceMap is not null && deviceMap.Layers.Count != config.NumHiddenLayers)
            throw new ArgumentException($"The device map places {deviceMap.Layers.Count} layers, but '{directory}' has {config.NumHiddenLayers}.", nameof(deviceMap));

        var (files, weightMap) = OpenWeightFiles(directory);
        DecoderModel? model = null;
        try
        {
            var sources = IndexTensors(directory, files, weightMap, config);
            // Before a single module exists: a config can ask for no more than the files hold (issue 28).
            CheckAgainstConfig(directory, config, sources);
            // built in the target dtype and on the target device: a bf16 7B model never exists in fp32, nor on the host
            model = deviceMap is null ? new DecoderModel(config, dtype, device) : new DecoderModel(config, dtype, deviceMap);
            var parameters = model.state_dict();

            using (no_grad())
                foreach (var (name, target) in parameters)
                {
                    var (file, entry) = sources[name];
                    using var loaded = file.Read(entry.Name, dtype);
                    using (var finite = isfinite(loaded).all())   // a NaN or Inf weight would poison every logit and the cache
                        if (!finite.item<bool>())
                            throw new InvalidDataException($"Tensor '{name}' in '{directory}' holds NaN or infinite values; the checkpoint is corrupt.");
                    target.copy_(loaded);
                }
            if (deviceMap is null && device.type != DeviceType.CPU) model.to(device);   // the buffers made on the host
            model.eval();
            NativeHeap.Trim();   // the freed read buffers' pages go back to the system (ADR 0019)
            return model;
        }
        catch
        {
            model?.Dispose();
            throw;
        }
        finally
        {
            foreach (var file in files) file.Dispose();
        }
    }

    public static void Save(DecoderModel model, string directory, long maxShardBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (maxShardBytes <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxShardBytes), maxShardBytes, "maxShardBytes must be positive.");
        Directory.CreateDirectory(directory);
        (model.Config with { TorchDtype = DtypeName(model.Dtype), Architectures = [ArchitectureOf(model.Config)], TextTowerOf = null })
            .Save(Path.Combine(directory, ConfigFile));

        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        var tensors = model.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        var shards = new List<List<KeyValuePair<string, Tensor>>> { new() };
        long shardBytes = 0, totalBytes = 0;
        foreach (var pair in tensors)
        {
            long bytes = pair.Value.numel() * pair.Value.dtype.ElementSize();
            if (shards[^1].Count > 0 && shardBytes + bytes > maxShardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(pair);
            shardBytes += bytes;
            totalBytes += bytes;
        }
        File.Delete(Path.Combine(directory, IndexFile));
        if (shards.Count == 1)
        {
            SafetensorsFile.Save(Path.Combine(directory, SingleFile), shards[0], metadata);
            return;
        }
        File.Delete(Path.Combine(directory, SingleFile));
        var weightMap = new JsonObject();
        for (int i = 0; i < shards.Count; i++)
        {
            string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsFile.Save(Path.Combine(directory, name), shards[i], metadata);
            foreach (var (key, _) in shards[i]) weightMap[key] = name;
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = totalBytes }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(directory, IndexFile), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// The weight files of a checkpoint directory: the shards its index lists, or model.safetensors; each checked to
    /// exist, with a hint for pytorch_model.bin.
    /// </summary>
    public static List<string> WeightFileNames(string directory) => WeightFiles(directory).Names;

    /// <summary>As <see cref="WeightFileNames"/>, with the index's weight map when there is an index (read once).</summary>
    private static (List<string> Names, Dictionary<string, string>? Map) WeightFiles(string directory)
    {
        string indexPath = Path.Combine(directory, IndexFile);
        var names = new List<string>();
        Dictionary<string, string>? map = null;
        if (File.Exists(indexPath))
        {
            map = ReadWeightMap(indexPath);
            names.AddRange(map.Values.Distinct());
            foreach (var name in names)
                if (!File.Exists(Path.Combine(directory, name)))
                    throw new FileNotFoundException($"Shard '{name}' listed in '{indexPath}' does not exist.", Path.Combine(directory, name));
        }
        else if (File.Exists(Path.Combine(directory, SingleFile)))
        {
            names.Add(SingleFile);
        }
        else
        {
            string hint = File.Exists(Path.Combine(directory, "pytorch_model.bin"))
                ? " Only safetensors weights are supported; convert pytorch_model.bin with transformers' save_pretrained(safe_serialization=True)."
                : "";
            throw new FileNotFoundException($"'{directory}' holds neither {SingleFile} nor {IndexFile}.{hint}", Path.Combine(directory, SingleFile));
        }
        return (names, map);
    }

    /// <summary>The index's weight_map: tensor name to shard file name (a plain name in the same directory).</summary>
    internal static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        long length = new FileInfo(indexPath).Length;
        if (length > SafetensorsFile.MaxHeaderBytes)   // it lists no more than the shards' headers do
            throw new InvalidDataException($"'{indexPath}' is {length} bytes long; an index is at most {SafetensorsFile.MaxHeaderBytes}.");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(indexPath), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{indexPath}' is not valid JSON: {e.Message}", e);
        }
        using (document)
        try
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"'{indexPath}' has no weight_map object.");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"'{indexPath}' maps '{entry.Name}' to no file name.");
                string name = entry.Value.GetString()!;
                // a shard lives beside the index: no directories, no "..", no absolute path
                if (name.Length == 0 || name is "." or ".." || Path.GetFileName(name) != name || name.Contains('\\'))
                    throw new InvalidDataException($"'{indexPath}' maps '{entry.Name}' to '{name}', which is not a file name in the checkpoint directory.");
                if (!result.TryAdd(entry.Name, name))
                    throw new InvalidDataException($"'{indexPath}' lists tensor '{entry.Name}' twice.");
            }
            return result;
        }
        catch (InvalidOperationException e)     // text that is not valid UTF-16 once unescaped, read as a name or string
        {
            throw new InvalidDataException($"'{indexPath}' holds text that is not valid: {e.Message}", e);
        }
    }

    private static (List<SafetensorsFile> Files, Dictionary<string, string>? Map) OpenWeightFiles(string directory)
    {
        var (names, map) = WeightFiles(directory);
        var files = new List<SafetensorsFile>();
        try
        {
            foreach (var name in names) files.Add(SafetensorsFile.Open(Path.Combine(directory, name)));
        }
        catch
        {
            foreach (var file in files) file.Dispose();
            throw;
        }
        return (files, map);
    }

    private static Dictionary<string, (SafetensorsFile File, SafetensorsEntry Entry)> IndexTensors(string directory, List<SafetensorsFile> files,
        Dictionary<string, string>? map, DecoderConfig config)
    {
        var sources = new Dictionary<string, (SafetensorsFile, SafetensorsEntry)>(StringComparer.Ordinal);
        foreach (var file in files)
            foreach (var (name, entry) in file.Entries)
                if (!sources.TryAdd(name, (file, entry)))
                    throw new InvalidDataException($"Tensor '{name}' appears in both '{sources[name].Item1.Path}' and '{file.Path}'.");
        if (map is not null)
        {
            // the index and the shards must agree on where each tensor is, as transformers reads by the index
            string indexPath = Path.Combine(directory, IndexFile);
            foreach (var (name, (file, _)) in sources)
                if (!map.TryGetValue(name, out var shard) || shard != Path.GetFileName(file.Path))
                    throw new InvalidDataException(
                        $"Tensor '{name}' is in '{file.Path}', but '{indexPath}' {(shard is null ? "does not list it" : $"places it in '{shard}'")}.");
            foreach (var (name, shard) in map)
                if (!sources.ContainsKey(name))
                    throw new InvalidDataException($"'{indexPath}' places tensor '{name}' in '{shard}', which does not hold it.");
        }
        return config.TextTowerOf is null ? sources : TextTower(sources);
    }

    /// <summary>
    /// The language model of a multimodal checkpoint (Gemma 3 4B and up) under the model's own names: its tensors
    /// under <c>language_model.model.</c> (transformers 4) or <c>model.language_model.</c> (5) become <c>model.</c>, its
    /// head <c>lm_head.</c>; the vision tower's and projector's tensors are left in the files.
    /// </summary>
    private static Dictionary<string, (SafetensorsFile File, SafetensorsEntry Entry)> TextTower(
        Dictionary<string, (SafetensorsFile File, SafetensorsEntry Entry)> sources)
    {
        var text = new Dictionary<string, (SafetensorsFile, SafetensorsEntry)>(StringComparer.Ordinal);
        foreach (var (name, source) in sources)
        {
            string? own = name.StartsWith("language_model.model.", StringComparison.Ordinal) ? "model." + name["language_model.model.".Length..]
                : name.StartsWith("model.language_model.", StringComparison.Ordinal) ? "model." + name["model.language_model.".Length..]
                : name.StartsWith("language_model.lm_head.", StringComparison.Ordinal) ? name["language_model.".Length..]
                : name.StartsWith("lm_head.", StringComparison.Ordinal) ? name
                : null;
            if (own is not null && !text.TryAdd(own, source))
                throw new InvalidDataException($"Tensor '{name}' names the language model's '{own}', which another tensor names too.");
        }
        return text;
    }

    /// <summary>
    /// Every tensor the config implies must be in the files, by name, with its shape and a floating-point dtype, and
    /// nothing else may be there. Costs time in the files' tensor count, not the config's claims.
    /// </summary>
    private static void CheckAgainstConfig(string directory, DecoderConfig config,
        Dictionary<string, (SafetensorsFile File, SafetensorsEntry Entry)> sources)
    {
        var layout = new CheckpointLayout(config);
        long found = 0;
        var unexpected = new List<string>();
        foreach (var name in sources.Keys.Order(StringComparer.Ordinal))
            if (layout.ShapeOf(name) is not null) found++;
            else if (!layout.Ignorable(name)) unexpected.Add(name);

        string described = $"config.json ({config.NumHiddenLayers} layers, hidden_size {config.HiddenSize}, vocab_size {config.VocabSize}{(config.TieWordEmbeddings ? ", tied embeddings" : "")})";
        long missingCount = layout.Count - found;
        if (missingCount > 0)
        {
            // at most found + 10 names are generated before the first ten missing ones are seen
            var missing = layout.Tensors().Where(t => !sources.ContainsKey(t.Name)).Take((int)Math.Min(10, missingCount)).Select(t => t.Name);
            throw new InvalidDataException(
                $"The checkpoint in '{directory}' lacks {missingCount} tensor(s) that {described} needs: {string.Join(", ", missing)}{(missingCount > 10 ? ", ..." : "")}.");
        }
        if (unexpected.Count > 0)
            throw new InvalidDataException(
                $"The checkpoint in '{directory}' holds {unexpected.Count} tensor(s) the model of {described} does not have: {string.Join(", ", unexpected.Take(10))}{(unexpected.Count > 10 ? ", ..." : "")}.");
        foreach (var (name, shape) in layout.Tensors())
        {
            var (file, entry) = sources[name];
            if (!entry.Shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"Tensor '{name}' has shape {Guard.Shape(entry.Shape)} in '{file.Path}', but {described} expects {Guard.Shape(shape)}.");
            if (!Guard.IsFloatingPoint(entry.Dtype))
                throw new InvalidDataException($"Tensor '{name}' in '{file.Path}' has dtype {entry.Dtype}; weights must be F32, F16, BF16 or F64.");
        }
    }

    private static string ArchitectureOf(DecoderConfig config) => config.Family.Architectures[0];

    private static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float64 => "float64",
        _ => "float32",
    };
}
