using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Linear layers that read the same input (q/k/v; gate/up), run as one product on CUDA: one launch instead of two or
/// three per layer and step (ADR 0015). The layers stay separate modules with HF's names. At first use their weights
/// are copied into the rows of one matrix and each layer's parameter is re-pointed (<c>set_</c>) at its rows, so memory
/// does not grow, in-place updates (loading, an optimizer step) reach both, and <c>SavePretrained</c> still writes HF's
/// separate keys. Under autograd the layers run one by one so that each parameter gets its gradient.
/// </summary>
internal sealed class FusedLinears : IDisposable
{
    private readonly Linear[] _layers;
    private readonly long[] _sizes;   // each layer's output width
    private Tensor? _weight;          // [ΣN, K]: the layers' weights as rows, which their parameters view
    private Tensor? _bias;            // [ΣN], or null when the layers have none
    private Tensor[] _viewers = [];   // the parameters re-pointed at _weight/_bias
    private readonly bool _packed;    // one layer that holds the group's rows itself (Phi-3's qkv_proj, gate_up_proj)

    /// <summary>Groups <paramref name="layers"/>, all of the same input width.</summary>
    public FusedLinears(params Linear[] layers)
    {
        _layers = layers;
        _sizes = layers.Select(l => l.weight!.size(0)).ToArray();
    }

    /// <summary>A group stored as one layer whose output rows are the group's, <paramref name="sizes"/> wide each (in order).</summary>
    public FusedLinears(Linear packed, params long[] sizes)
    {
        if (sizes.Sum() != packed.weight!.size(0))
            throw new ArgumentException($"The parts ({string.Join(" + ", sizes)}) must cover the layer's {packed.weight!.size(0)} rows.", nameof(sizes));
        _layers = [packed];
        _sizes = sizes;
        _packed = true;
    }

    /// <summary>The layers, in output order.</summary>
    public IReadOnlyList<Linear> Layers => _layers;

    /// <summary>Whether the layers currently view one fused weight.</summary>
    public bool IsFused => _packed || _weight is not null && StillViewed();

    /// <summary>The fused weight and bias while the layers view them, else null.</summary>
    internal (Tensor Weight, Tensor? Bias)? Fused => _packed ? (_layers[0].weight!, _layers[0].bias) : IsFused ? (_weight!, _bias) : null;

    /// <summary>The fused weight and bias for input <paramref name="x"/>, fusing on first use; null where the layers run one by one.</summary>
    public (Tensor Weight, Tensor? Bias)? For(Tensor x)
    {
        if (_packed) return (_layers[0].weight!, _layers[0].bias);
        if (x.device_type != DeviceType.CUDA || is_grad_enabled() && _layers.Any(l => l.weight!.requires_grad))
            return null;
        return Fuse() ? (_weight!, _bias) : null;
    }

    /// <summary>Splits the fused product [..., ΣN] into each layer's output [..., N] (views).</summary>
    public Tensor[] Split(Tensor product) => product.split(_sizes, -1);

    /// <summary>
    /// Makes the layers' parameters views of one weight (and bias) unless they already are; false when they cannot be:
    /// different devices, dtypes or input widths, non-contiguous weights, or biases on some layers only.
    /// </summary>
    internal bool Fuse()
    {
        if (_packed) return true;
        if (_weight is not null)
        {
            if (StillViewed()) return true;
            Release(); // a parameter was replaced (moved to another device, say): fuse what is there now
        }
        var weights = _layers.Select(l => l.weight!).ToArray();
        var biases = _layers.Select(l => l.bias).ToArray();
        var first = weights[0];
        bool uniform = weights.All(w => w.device_type == first.device_type && w.device_index == first.device_index && w.dtype == first.dtype
                                        && w.dim() == 2 && w.size(1) == first.size(1) && w.is_contiguous());
        bool allBiases = biases.All(b => b is not null && b.device_type == first.device_type && b.device_index == first.device_index && b.dtype == first.dtype);
        if (!uniform || !(allBiases || biases.All(b => b is null)))
            return false;
        using var noGrad = no_grad();
        _weight = cat(weights, 0).DetachFromDisposeScope();
        _bias = allBiases ? cat(biases!, 0).DetachFromDisposeScope() : null;
        long row = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            weights[i].set_(_weight.narrow(0, row, _sizes[i]));
            if (_bias is not null) biases[i]!.set_(_bias.narrow(0, row, _sizes[i]));
            row += _sizes[i];
        }
        _viewers = allBiases ? [.. weights, .. biases!] : weights;
        return true;
    }

    private bool StillViewed()
    {
        for (int i = 0; i < _layers.Length; i++)
            if (!ReferenceEquals(_layers[i].weight, _viewers[i]) || _bias is not null && !ReferenceEquals(_layers[i].bias, _viewers[_layers.Length + i]))
                return false;
        return true;
    }

    private void Release()
    {
        _weight?.Dispose();
        _bias?.Dispose();
        _weight = _bias = null;
        _viewers = [];
    }

    /// <summary>Drops the fused tensors; the parameters keep their storage.</summary>
    public void Dispose() => Release();
}
