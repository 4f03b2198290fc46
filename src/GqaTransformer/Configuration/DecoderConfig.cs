using System.Text.Json;
using System.Text.Json.Serialization;

namespace GqaTransformer;

/// <summary>
/// The immutable description of a decoder-only transformer (Llama, Mistral, Qwen2 families). Property names are C#;
/// their JSON names are exactly those of HuggingFace's <c>config.json</c>, so a hub config deserialises directly.
/// Every module validates the config it is given once, at construction (<see cref="Validate"/>).
/// </summary>
public sealed partial record DecoderConfig
{
    private readonly int? _numKeyValueHeads;
    private readonly int? _headDim;

    /// <summary>HF <c>model_type</c>: <c>llama</c>, <c>mistral</c> or <c>qwen2</c>.</summary>
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "llama";

    /// <summary>HF <c>architectures</c>, e.g. <c>["LlamaForCausalLM"]</c>.</summary>
    [JsonPropertyName("architectures")] public IReadOnlyList<string>? Architectures { get; init; }

    /// <summary>Width of the residual stream (<c>hidden_size</c>).</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; }

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; }

    /// <summary>
    /// Number of key/value heads (<c>num_key_value_heads</c>). Defaults to <see cref="NumAttentionHeads"/> (plain MHA);
    /// 1 is multi-query attention; anything in between that divides the head count is grouped-query attention.
    /// </summary>
    [JsonPropertyName("num_key_value_heads")]
    public int NumKeyValueHeads { get => _numKeyValueHeads ?? NumAttentionHeads; init => _numKeyValueHeads = value; }

    /// <summary>Size of one attention head (<c>head_dim</c>). Defaults to hidden_size / num_attention_heads.</summary>
    [JsonPropertyName("head_dim")]
    public int HeadDim
    {
        get => _headDim ?? (NumAttentionHeads > 0 ? HiddenSize / NumAttentionHeads : 0);
        init => _headDim = value;
    }

    /// <summary>Inner width of the SwiGLU MLP (<c>intermediate_size</c>).</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; }

    /// <summary>Number of decoder layers (<c>num_hidden_layers</c>).</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; }

    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }

    /// <summary>Epsilon of every RMSNorm (<c>rms_norm_eps</c>).</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>RoPE base (<c>rope_theta</c>).</summary>
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;

    /// <summary>RoPE scaling (<c>rope_scaling</c>); null means the default, unscaled RoPE.</summary>
    [JsonPropertyName("rope_scaling")] public RopeScaling? RopeScaling { get; init; }

    /// <summary>Longest position the model was trained for (<c>max_position_embeddings</c>).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>Whether <c>lm_head</c> shares the token-embedding matrix (<c>tie_word_embeddings</c>).</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; }

    /// <summary>Llama's <c>attention_bias</c>: biases on q, k, v and o projections.</summary>
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }

    /// <summary>Mistral's <c>sliding_window</c>: a query attends only to the last this-many keys. Null: full attention.</summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; }

    /// <summary>HF <c>torch_dtype</c>: the dtype the checkpoint was saved in (informational).</summary>
    [JsonPropertyName("torch_dtype")] public string? TorchDtype { get; init; }

    /// <summary>Token id that begins a sequence (<c>bos_token_id</c>).</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }

    /// <summary>Token id(s) that end generation (<c>eos_token_id</c>: an int or a list in HF configs).</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(IntOrIntListConverter))]
    public IReadOnlyList<int>? EosTokenIds { get; init; }

    /// <summary>Number of query heads that share one key/value head.</summary>
    [JsonIgnore] public int GroupSize => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Whether q/k/v projections carry a bias (Llama's attention_bias, always for Qwen2).</summary>
    [JsonIgnore] public bool QkvBias => AttentionBias || ModelType == "qwen2";

    /// <summary>Whether the output projection carries a bias (Llama's attention_bias; never for Qwen2).</summary>
    [JsonIgnore] public bool OutputBias => AttentionBias && ModelType != "qwen2";

    /// <summary>
    /// Checks every rule the modules rely on and throws an <see cref="ArgumentException"/> that names the field,
    /// its value and the rule. Returns this config so it can be chained.
    /// </summary>
    public DecoderConfig Validate()
    {
        ValidateArchitecture();
        ValidateAttentionShape(HiddenSize, NumAttentionHeads, NumKeyValueHeads, _headDim, "config");
        RequirePositive(IntermediateSize, "intermediate_size");
        RequirePositive(NumHiddenLayers, "num_hidden_layers");
        RequirePositive(VocabSize, "vocab_size");
        RequirePositive(MaxPositionEmbeddings, "max_position_embeddings");
        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps))
            throw new ArgumentException($"rms_norm_eps must be a positive finite number, but was {RmsNormEps}.", "config");
        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta))
            throw new ArgumentException($"rope_theta must be a positive finite number, but was {RopeTheta}.", "config");
        if (SlidingWindow is { } window && window <= 0)
            throw new ArgumentException($"sliding_window must be positive or absent, but was {window}.", "config");
        RopeScaling?.Validate(HeadDim);
        return this;
    }

    /// <summary>The rules that any attention shape must satisfy; shared by the config and direct constructors.</summary>
    internal static void ValidateAttentionShape(int hiddenSize, int numHeads, int numKvHeads, int? headDim, string paramName)
    {
        RequirePositive(hiddenSize, "hidden_size", paramName);
        RequirePositive(numHeads, "num_attention_heads", paramName);
        RequirePositive(numKvHeads, "num_key_value_heads", paramName);
        if (numKvHeads > numHeads)
            throw new ArgumentException(
                $"num_key_value_heads ({numKvHeads}) must not exceed num_attention_heads ({numHeads}).", paramName);
        if (numHeads % numKvHeads != 0)
            throw new ArgumentException(
                $"num_attention_heads ({numHeads}) must be divisible by num_key_value_heads ({numKvHeads}) so that every key/value head serves the same number of query heads.", paramName);
        if (headDim is null && hiddenSize % numHeads != 0)
            throw new ArgumentException(
                $"hidden_size ({hiddenSize}) must be divisible by num_attention_heads ({numHeads}) when head_dim is not given.", paramName);
        int d = headDim ?? hiddenSize / numHeads;
        RequirePositive(d, "head_dim", paramName);
        if (d % 2 != 0)
            throw new ArgumentException($"head_dim must be even for rotary embeddings, but was {d}.", paramName);
        if ((long)numHeads * d > int.MaxValue)   // the projections' widths are ints: they would wrap
            throw new ArgumentException(
                $"num_attention_heads × head_dim ({numHeads} × {d} = {(long)numHeads * d}) must not exceed {int.MaxValue}.", paramName);
    }

    private static void RequirePositive(int value, string field, string paramName = "config")
    {
        if (value <= 0)
            throw new ArgumentException($"{field} must be positive, but was {value}.", paramName);
    }

    private static readonly JsonSerializerOptions s_writeOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Serialises to HF's classic <c>config.json</c> layout.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_writeOptions);
}

/// <summary>HF's <c>rope_scaling</c> object (classic layout) or <c>rope_parameters</c> (transformers 5 layout).</summary>
public sealed record RopeScaling
{
    /// <summary><c>rope_type</c> (or the older <c>type</c>): <c>default</c>, <c>linear</c>, <c>llama3</c>, <c>dynamic</c>.</summary>
    [JsonPropertyName("rope_type")] public string RopeType { get; init; } = "default";

    /// <summary><c>factor</c>: the context-extension factor.</summary>
    [JsonPropertyName("factor")] public double? Factor { get; init; }

    /// <summary>Llama 3.1 <c>low_freq_factor</c>.</summary>
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }

    /// <summary>Llama 3.1 <c>high_freq_factor</c>.</summary>
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }

    /// <summary>Llama 3.1 <c>original_max_position_embeddings</c>.</summary>
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>The RoPE types this library computes.</summary>
    public static IReadOnlyList<string> SupportedTypes { get; } = ["default", "linear", "llama3"];

    internal void Validate(int headDim)
    {
        if (!SupportedTypes.Contains(RopeType))
            throw new NotSupportedException(
                $"rope_type '{RopeType}' is not supported; supported types are {string.Join(", ", SupportedTypes)}.");
        if (RopeType == "default") return;
        if (Factor is not { } f || !(f > 0))
            throw new ArgumentException($"rope_scaling.factor must be a positive number for rope_type '{RopeType}', but was {Factor?.ToString() ?? "missing"}.", "config");
        if (RopeType == "llama3")
        {
            if (LowFreqFactor is not { } lo || HighFreqFactor is not { } hi || OriginalMaxPositionEmbeddings is not { } orig)
                throw new ArgumentException("rope_type 'llama3' needs low_freq_factor, high_freq_factor and original_max_position_embeddings.", "config");
            if (!(hi > lo) || orig <= 0)
                throw new ArgumentException($"rope_type 'llama3' needs high_freq_factor ({hi}) > low_freq_factor ({lo}) and original_max_position_embeddings > 0 ({orig}).", "config");
        }
    }
}

/// <summary>Reads HF's <c>eos_token_id</c>, which is an int in some configs and a list in others.</summary>
internal sealed class IntOrIntListConverter : JsonConverter<IReadOnlyList<int>?>
{
    public override IReadOnlyList<int>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null: return null;
            case JsonTokenType.Number: return [reader.GetInt32()];
            case JsonTokenType.StartArray:
                var list = new List<int>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    list.Add(reader.GetInt32());
                return list;
            default: throw new JsonException($"eos_token_id must be an integer or a list of integers, not {reader.TokenType}.");
        }
    }

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<int>? value, JsonSerializerOptions options)
    {
        if (value is null) { writer.WriteNullValue(); return; }
        if (value.Count == 1) { writer.WriteNumberValue(value[0]); return; }
        writer.WriteStartArray();
        foreach (var v in value) writer.WriteNumberValue(v);
        writer.WriteEndArray();
    }
}
