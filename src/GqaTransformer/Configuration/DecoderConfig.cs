using System.Text.Json;
using System.Text.Json.Serialization;

namespace GqaTransformer;

/// <summary>
/// The immutable description of a decoder-only transformer (the families of <see cref="SupportedModelTypes"/>). Property
/// names are C#; their JSON names are exactly those of HuggingFace's <c>config.json</c>, so a hub config deserialises
/// directly. What a field means can depend on the family (<c>model_type</c>): each family reads the fields it knows and
/// hands the blocks their parts (ADR 0021). Every module validates the config it is given once, at construction
/// (<see cref="Validate"/>).
/// </summary>
public sealed partial record DecoderConfig
{
    private readonly int? _numKeyValueHeads;
    private readonly int? _headDim;

    /// <summary>HF <c>model_type</c>: one of <see cref="SupportedModelTypes"/>, which picks the family.</summary>
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

    /// <summary>
    /// <c>sliding_window</c>: a query on a sliding layer attends only to the last this-many keys, itself included.
    /// Which layers slide is the family's rule or <see cref="LayerTypes"/>; null: no layer slides.
    /// </summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; }

    /// <summary>
    /// <c>layer_types</c>: <c>full_attention</c> or <c>sliding_attention</c> for each layer (transformers 5, and recent
    /// hub configs). Absent: the family's rule decides (<see cref="IsSlidingLayer"/>).
    /// </summary>
    [JsonPropertyName("layer_types")] public IReadOnlyList<string>? LayerTypes { get; init; }

    /// <summary>Qwen2, Qwen3 and SmolLM3 <c>use_sliding_window</c>: whether <see cref="SlidingWindow"/> applies at all.</summary>
    [JsonPropertyName("use_sliding_window")] public bool? UseSlidingWindow { get; init; }

    /// <summary>Qwen2 and Qwen3 <c>max_window_layers</c>: layers with this index and above slide (when <see cref="UseSlidingWindow"/>).</summary>
    [JsonPropertyName("max_window_layers")] public int? MaxWindowLayers { get; init; }

    /// <summary>Gemma 3 <c>sliding_window_pattern</c>: every this-many-th layer is full, the others slide (default 6).</summary>
    [JsonPropertyName("sliding_window_pattern")] public int? SlidingWindowPattern { get; init; }

    /// <summary><c>hidden_act</c>: the MLP's gate activation (<c>silu</c>; Gemma: <c>gelu_pytorch_tanh</c>).</summary>
    [JsonPropertyName("hidden_act")] public string? HiddenAct { get; init; }

    /// <summary>Gemma's <c>hidden_activation</c>, which it reads in place of <see cref="HiddenAct"/>.</summary>
    [JsonPropertyName("hidden_activation")] public string? HiddenActivation { get; init; }

    /// <summary>Gemma's <c>query_pre_attn_scalar</c>: scores are scaled by its inverse square root, not head_dim's.</summary>
    [JsonPropertyName("query_pre_attn_scalar")] public double? QueryPreAttnScalar { get; init; }

    /// <summary>Gemma's <c>attn_logit_softcapping</c>: scores become <c>cap · tanh(score / cap)</c> before the mask.</summary>
    [JsonPropertyName("attn_logit_softcapping")] public double? AttnLogitSoftcapping { get; init; }

    /// <summary>Gemma's <c>final_logit_softcapping</c>: logits become <c>cap · tanh(logit / cap)</c>.</summary>
    [JsonPropertyName("final_logit_softcapping")] public double? FinalLogitSoftcapping { get; init; }

    /// <summary>Gemma 3's <c>rope_local_base_freq</c>: the RoPE base of the sliding layers (<see cref="RopeTheta"/> is the full layers').</summary>
    [JsonPropertyName("rope_local_base_freq")] public double? RopeLocalBaseFreq { get; init; }

    /// <summary>Phi-3's <c>partial_rotary_factor</c>: the share of each head's dimensions that rotate (the first ones).</summary>
    [JsonPropertyName("partial_rotary_factor")] public double? PartialRotaryFactor { get; init; }

    /// <summary>Phi-3's top-level <c>original_max_position_embeddings</c>: past it, LongRoPE switches to its long factors.</summary>
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>SmolLM3's <c>no_rope_layers</c>: 1 where a layer uses RoPE, 0 where it uses none.</summary>
    [JsonPropertyName("no_rope_layers")] public IReadOnlyList<int>? NoRopeLayers { get; init; }

    /// <summary>SmolLM3's <c>no_rope_layer_interval</c>: without <see cref="NoRopeLayers"/>, every this-many-th layer has no RoPE.</summary>
    [JsonPropertyName("no_rope_layer_interval")] public int? NoRopeLayerInterval { get; init; }

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

    /// <summary>
    /// Set when this is the language model of a multimodal checkpoint (<c>gemma3</c>: Gemma 3 4B and up), whose tensors
    /// sit under another prefix; <c>DecoderModel.FromPretrained</c> reads only those.
    /// </summary>
    [JsonIgnore] internal string? TextTowerOf { get; init; }

    /// <summary>The family that <see cref="ModelType"/> names: what it changes from Llama.</summary>
    internal ModelFamily Family => ModelFamily.For(ModelType);

    /// <summary>Whether q/k/v projections carry a bias (Llama's attention_bias; always for Qwen2).</summary>
    [JsonIgnore] public bool QkvBias => Family.QkvBias(this);

    /// <summary>Whether the output projection carries a bias (Llama's attention_bias; never for Qwen2).</summary>
    [JsonIgnore] public bool OutputBias => Family.OutputBias(this);

    /// <summary>Whether layer <paramref name="layer"/> slides (attends to the last <see cref="SlidingWindow"/> keys only).</summary>
    public bool IsSlidingLayer(int layer)
    {
        if (layer < 0 || layer >= NumHiddenLayers)
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"layer must be in [0, {NumHiddenLayers}).");
        if (SlidingWindow is null) return false;
        return LayerTypes is { } types ? types[layer] == "sliding_attention" : Family.IsSlidingLayer(this, layer);
    }

    /// <summary>The window of layer <paramref name="layer"/>: <see cref="SlidingWindow"/> where it slides, else null.</summary>
    public int? WindowOf(int layer) => IsSlidingLayer(layer) ? SlidingWindow : null;

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
        if (LayerTypes is { } types)
        {
            if (types.Count != NumHiddenLayers)
                throw new ArgumentException($"layer_types must name one type per layer ({NumHiddenLayers}), but names {types.Count}.", "config");
            if (types.FirstOrDefault(t => t is not ("full_attention" or "sliding_attention")) is { } unknown)
                throw new NotSupportedException($"layer_types holds '{unknown}'; supported types are full_attention and sliding_attention.");
        }
        Family.Validate(this);
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
    /// <summary><c>rope_type</c> (or the older <c>type</c>): <c>default</c>, <c>linear</c>, <c>llama3</c>, <c>longrope</c>.</summary>
    [JsonPropertyName("rope_type")] public string RopeType { get; init; } = "default";

    /// <summary><c>factor</c>: the context-extension factor.</summary>
    [JsonPropertyName("factor")] public double? Factor { get; init; }

    /// <summary>Llama 3.1 <c>low_freq_factor</c>.</summary>
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }

    /// <summary>Llama 3.1 <c>high_freq_factor</c>.</summary>
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }

    /// <summary>Llama 3.1 <c>original_max_position_embeddings</c>.</summary>
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>Phi-3's LongRoPE <c>short_factor</c>: per-frequency divisors up to the original context.</summary>
    [JsonPropertyName("short_factor")] public IReadOnlyList<double>? ShortFactor { get; init; }

    /// <summary>Phi-3's LongRoPE <c>long_factor</c>: per-frequency divisors past the original context.</summary>
    [JsonPropertyName("long_factor")] public IReadOnlyList<double>? LongFactor { get; init; }

    /// <summary>LongRoPE's <c>attention_factor</c> on cos and sin; absent: √(1 + ln(factor) / ln(original)).</summary>
    [JsonPropertyName("attention_factor")] public double? AttentionFactor { get; init; }

    /// <summary>YaRN's <c>beta_fast</c>: rotations per context where extrapolation stops (default 32).</summary>
    [JsonPropertyName("beta_fast")] public double? BetaFast { get; init; }

    /// <summary>YaRN's <c>beta_slow</c>: rotations per context where interpolation starts (default 1).</summary>
    [JsonPropertyName("beta_slow")] public double? BetaSlow { get; init; }

    /// <summary>YaRN's <c>mscale</c> (DeepSeek): with <see cref="MscaleAllDim"/>, sets the attention factor.</summary>
    [JsonPropertyName("mscale")] public double? Mscale { get; init; }

    /// <summary>YaRN's <c>mscale_all_dim</c> (DeepSeek).</summary>
    [JsonPropertyName("mscale_all_dim")] public double? MscaleAllDim { get; init; }

    /// <summary>YaRN's <c>truncate</c>: whether the correction range is rounded to whole dimensions (default true).</summary>
    [JsonPropertyName("truncate")] public bool? Truncate { get; init; }

    /// <summary>The RoPE types this library computes.</summary>
    public static IReadOnlyList<string> SupportedTypes { get; } = ["default", "linear", "llama3", "longrope", "yarn"];

    internal void Validate(int rotaryDim)
    {
        if (!SupportedTypes.Contains(RopeType))
            throw new NotSupportedException(
                $"rope_type '{RopeType}' is not supported; supported types are {string.Join(", ", SupportedTypes)}.");
        if (RopeType == "default") return;
        if (RopeType == "longrope")
        {
            foreach (var (factors, field) in new[] { (ShortFactor, "short_factor"), (LongFactor, "long_factor") })
                if (factors is null || factors.Count != rotaryDim / 2 || factors.Any(x => !(x > 0) || double.IsInfinity(x)))
                    throw new ArgumentException(
                        $"rope_scaling.{field} must hold {rotaryDim / 2} positive numbers (one per rotated pair), but holds {factors?.Count.ToString() ?? "nothing"}.", "config");
            if (AttentionFactor is { } a && !(a > 0))
                throw new ArgumentException($"rope_scaling.attention_factor must be positive, but was {a}.", "config");
            return;
        }
        if (RopeType == "yarn" && Factor is null && OriginalMaxPositionEmbeddings is not null) return; // factor: max / original
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
