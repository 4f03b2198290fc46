using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>The gated feed-forward block of Llama-style models: <c>down(silu(gate(x)) * up(x))</c>.</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] private readonly Linear _gateProj;
    [ComponentName(Name = "up_proj")] private readonly Linear _upProj;
    [ComponentName(Name = "down_proj")] private readonly Linear _downProj;
    private readonly FusedLinears _gateUp;                                   // gate and up as one product on CUDA (ADR 0015)

    /// <summary>Creates the block with HF's parameter names <c>gate_proj</c>, <c>up_proj</c>, <c>down_proj</c>.</summary>
    /// <param name="hiddenSize">Width of the input and output.</param>
    /// <param name="intermediateSize">Inner width.</param>
    /// <param name="name">Module name.</param>
    /// <param name="device">Device of the weights (default CPU).</param>
    /// <param name="dtype">Element type of the weights (default float32).</param>
    public SwiGluMlp(int hiddenSize, int intermediateSize, string name = "mlp", Device? device = null, ScalarType? dtype = null) : base(TorchBackend.Checked(name))
    {
        Guard.Positive(hiddenSize, nameof(hiddenSize));
        Guard.Positive(intermediateSize, nameof(intermediateSize));
        _gateProj = nn.Linear(hiddenSize, intermediateSize, hasBias: false, device, dtype);
        _upProj = nn.Linear(hiddenSize, intermediateSize, hasBias: false, device, dtype);
        _downProj = nn.Linear(intermediateSize, hiddenSize, hasBias: false, device, dtype);
        _gateUp = new FusedLinears(_gateProj, _upProj);
        RegisterComponents();
    }

    /// <summary>gate_proj and up_proj as one group (fused on CUDA).</summary>
    internal FusedLinears GateUp => _gateUp;

    /// <summary>x: [..., hidden] → [..., hidden].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var gateUp = Kernels.Linear(_gateUp, x);                        // x·Wgate, x·Wup: [..., intermediate] each
        return Kernels.Linear(_downProj, nn.functional.silu(gateUp[0]).mul_(gateUp[1])).MoveToOuterDisposeScope(); // [..., hidden]
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _gateUp.Dispose();
        base.Dispose(disposing);
    }
}
