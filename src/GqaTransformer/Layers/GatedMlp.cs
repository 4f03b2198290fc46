using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// The gated feed-forward block of Llama-style models: <c>down(act(gate(x)) * up(x))</c>, with SiLU (SwiGLU: Llama,
/// Qwen, Mistral, Phi-3, SmolLM3, OLMo 2) or tanh-approximated GELU (GeGLU: Gemma). HF's parameter names:
/// <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>; Phi-3 stores gate and up as one <c>gate_up_proj</c> (gate rows first).
/// </summary>
public sealed class GatedMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] private readonly Linear? _gateProj;
    [ComponentName(Name = "up_proj")] private readonly Linear? _upProj;
    [ComponentName(Name = "gate_up_proj")] private readonly Linear? _gateUpProj;
    [ComponentName(Name = "down_proj")] private readonly Linear _downProj;
    private readonly FusedLinears _gateUp;                                   // gate and up as one product (ADR 0015)
    private readonly Func<Tensor, Tensor> _activation;

    /// <summary>Creates the SwiGLU block with HF's parameter names <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>.</summary>
    /// <param name="hiddenSize">Width of the input and output.</param>
    /// <param name="intermediateSize">Inner width.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    /// <param name="activation">The gate's activation by HF's name: <c>silu</c>, <c>gelu_pytorch_tanh</c>, <c>gelu_new</c> or <c>gelu</c>.</param>
    public GatedMlp(int hiddenSize, int intermediateSize, string name = "mlp", Device? device = null, ScalarType? dtype = null, string activation = "silu")
        : this(new MlpParts(hiddenSize, intermediateSize, activation, Fused: false), name, device, dtype)
    {
    }

    internal GatedMlp(MlpParts parts, string name, Device? device, ScalarType? dtype) : base(TorchBackend.Checked(name))
    {
        Guard.Positive(parts.HiddenSize, "hiddenSize");
        Guard.Positive(parts.IntermediateSize, "intermediateSize");
        _activation = parts.Activation switch
        {
            "silu" => x => x.silu(),
            "gelu_pytorch_tanh" or "gelu_new" => x => x.gelu(GELU.Approximate.tanh),
            "gelu" => x => x.gelu(),
            var other => throw new ArgumentException(
                $"activation '{other}' is not supported; supported activations are {string.Join(", ", ModelFamily.SupportedActivations)}.", "activation"),
        };
        Activation = parts.Activation;
        int hidden = parts.HiddenSize, inner = parts.IntermediateSize;
        if (parts.Fused)
        {
            _gateUpProj = nn.Linear(hidden, 2L * inner, hasBias: false, device, dtype);
            _gateUp = new FusedLinears(_gateUpProj, inner, inner);
        }
        else
        {
            _gateProj = nn.Linear(hidden, inner, hasBias: false, device, dtype);
            _upProj = nn.Linear(hidden, inner, hasBias: false, device, dtype);
            _gateUp = new FusedLinears(_gateProj, _upProj);
        }
        _downProj = nn.Linear(inner, hidden, hasBias: false, device, dtype);
        RegisterComponents();
    }

    /// <summary>The gate's activation, by HF's name.</summary>
    public string Activation { get; }

    /// <summary>gate_proj and up_proj as one group (fused on CUDA; Phi-3's gate_up_proj is one already).</summary>
    internal FusedLinears GateUp => _gateUp;

    /// <summary>x: [..., hidden] → [..., hidden].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var gateUp = Kernels.Linear(_gateUp, x);                        // x·Wgate, x·Wup: [..., intermediate] each
        return Kernels.Linear(_downProj, _activation(gateUp[0]).mul_(gateUp[1])).MoveToOuterDisposeScope(); // [..., hidden]
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _gateUp.Dispose();
        base.Dispose(disposing);
    }
}
