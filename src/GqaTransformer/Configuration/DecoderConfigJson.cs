using System.Text.Json;
using System.Text.Json.Nodes;

namespace GqaTransformer;

public sealed partial record DecoderConfig
{
    /// <summary>The <c>model_type</c> values this library runs: those of every registered family.</summary>
    public static IReadOnlyList<string> SupportedModelTypes { get; } = [.. ModelFamily.All.SelectMany(f => f.ModelTypes)];

    /// <summary>The <c>architectures</c> values this library runs: those of every registered family.</summary>
    public static IReadOnlyList<string> SupportedArchitectures { get; } = [.. ModelFamily.All.SelectMany(f => f.Architectures)];

    private static readonly string[] s_requiredFields =
        ["hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers", "vocab_size"];

    /// <summary>Reads a HuggingFace <c>config.json</c> file (classic or transformers-5 layout) and validates it.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not valid JSON, or a required field is missing.</exception>
    /// <exception cref="NotSupportedException">An architecture, model type, activation or RoPE type this library does not run.</exception>
    public static DecoderConfig FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Config file '{path}' does not exist.", path);
        try
        {
            return FromJson(File.ReadAllText(path));
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"'{path}': {e.Message}", e);
        }
    }

    /// <summary>
    /// Parses the text of a HuggingFace <c>config.json</c> and validates it. Accepts both layouts found on the hub:
    /// the classic one (<c>rope_theta</c>, <c>rope_scaling</c> with <c>type</c> or <c>rope_type</c>) and the one
    /// transformers 5 writes (<c>rope_parameters</c>).
    /// </summary>
    public static DecoderConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return Parse(json);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or InvalidCastException or KeyNotFoundException
                                      or ArgumentException and not ArgumentOutOfRangeException)
        {
            // A value of the wrong JSON kind, a duplicate key, text that is not UTF-8: the file's fault, said as such.
            throw new InvalidDataException($"config.json holds a value this library cannot read: {e.Message}", e);
        }
    }

    private static DecoderConfig Parse(string json)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException("config.json must hold a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"config.json is not valid JSON: {e.Message}", e);
        }

        string? textTowerOf = null;
        if (root["model_type"] is JsonValue outer && outer.GetValue<string>() == "gemma3" && root["text_config"] is JsonObject text)
            (root, textTowerOf) = (Gemma3TextTower(root, text), "gemma3");
        foreach (var field in s_requiredFields)
            if (root[field] is null)
                throw new InvalidDataException($"config.json has no '{field}'.");
        if (root["mlp_bias"] is JsonValue mlpBias && mlpBias.GetValue<bool>())
            throw new NotSupportedException("mlp_bias = true is not supported.");

        // transformers 5: rope_parameters holds rope_theta, rope_type and the scaling fields together, one such object
        // per layer type where the types differ (Gemma 3: the 4.x rope_theta + rope_scaling for full layers,
        // rope_local_base_freq for sliding ones).
        if (root["rope_parameters"] is JsonObject parameters)
        {
            if (parameters["full_attention"] is JsonObject || parameters["sliding_attention"] is JsonObject)
            {
                if (parameters["sliding_attention"] is JsonObject local)
                {
                    if (local["rope_type"] is JsonValue localType && localType.GetValue<string>() != "default")
                        throw new NotSupportedException($"rope_parameters.sliding_attention.rope_type '{localType}' is not supported; sliding layers take the default RoPE.");
                    if (local["rope_theta"] is { } localTheta) root["rope_local_base_freq"] = localTheta.DeepClone();
                }
                parameters = parameters["full_attention"] as JsonObject ?? [];
            }
            if (parameters["rope_theta"] is { } theta) root["rope_theta"] = theta.DeepClone();
            if (parameters["partial_rotary_factor"] is { } partial && root["partial_rotary_factor"] is null) // a top-level field in 4.x
                root["partial_rotary_factor"] = partial.DeepClone();
            var scaling = (JsonObject)parameters.DeepClone();
            scaling.Remove("rope_theta");
            scaling.Remove("partial_rotary_factor");
            root["rope_scaling"] = scaling;
            root.Remove("rope_parameters");
        }
        // Older configs spell rope_type as "type".
        if (root["rope_scaling"] is JsonObject classic && classic["rope_type"] is null && classic["type"] is { } type)
            classic["rope_type"] = type.DeepClone();
        // Qwen2, Qwen3 and SmolLM3 configs carry a sliding_window that applies only when use_sliding_window is true.
        if (root["use_sliding_window"] is JsonValue use && !use.GetValue<bool>())
            root.Remove("sliding_window");
        // transformers 5 writes layer_types even where no layer can slide; without a window they say nothing more.
        if (root["sliding_window"] is null) root.Remove("layer_types");

        DecoderConfig config;
        try
        {
            config = root.Deserialize<DecoderConfig>() ?? throw new InvalidDataException("config.json is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"config.json has a field of the wrong type: {e.Message}", e);
        }
        if (config.RopeScaling is { RopeType: "default" }) config = config with { RopeScaling = null };
        if (textTowerOf is not null) config = config with { TextTowerOf = textTowerOf };
        return config.Validate();
    }

    /// <summary>
    /// The language model of a Gemma 3 4B+ checkpoint (<c>Gemma3ForConditionalGeneration</c>): its <c>text_config</c>,
    /// which holds only what differs from <c>Gemma3TextConfig</c>'s defaults, over those defaults; the token ids from the
    /// outer config where the inner one has none.
    /// </summary>
    private static JsonObject Gemma3TextTower(JsonObject outer, JsonObject text)
    {
        var root = new JsonObject
        {
            ["vocab_size"] = 262_208, ["hidden_size"] = 2304, ["intermediate_size"] = 9216, ["num_hidden_layers"] = 26,
            ["num_attention_heads"] = 8, ["num_key_value_heads"] = 4, ["head_dim"] = 256, ["hidden_activation"] = "gelu_pytorch_tanh",
            ["max_position_embeddings"] = 131_072, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1_000_000.0, ["rope_local_base_freq"] = 10_000.0,
            ["query_pre_attn_scalar"] = 256, ["sliding_window"] = 4096, ["sliding_window_pattern"] = 6, ["tie_word_embeddings"] = true,
            ["pad_token_id"] = 0, ["eos_token_id"] = 1, ["bos_token_id"] = 2,
        };
        foreach (var key in new[] { "eos_token_id", "bos_token_id", "pad_token_id" })
            if (outer[key] is { } id) root[key] = id.DeepClone();
        foreach (var (key, value) in text) root[key] = value?.DeepClone();
        root["model_type"] = "gemma3_text";
        root["architectures"] = new JsonArray("Gemma3ForCausalLM");
        return root;
    }

    /// <summary>Writes the config to <paramref name="path"/> in HF's classic <c>config.json</c> layout.</summary>
    public void Save(string path) => File.WriteAllText(path, ToJson());

    private void ValidateArchitecture()
    {
        if (!SupportedModelTypes.Contains(ModelType))
            throw new NotSupportedException(
                $"model_type '{ModelType}' is not supported; supported types are {string.Join(", ", SupportedModelTypes)}.");
        foreach (var architecture in Architectures ?? [])
            if (!SupportedArchitectures.Contains(architecture))
                throw new NotSupportedException(
                    $"Architecture '{architecture}' is not supported; supported architectures are {string.Join(", ", SupportedArchitectures)}.");
    }
}
