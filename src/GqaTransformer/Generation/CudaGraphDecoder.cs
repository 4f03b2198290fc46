using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Decode steps of one <see cref="GenerationSession"/> replayed from a CUDA graph: the whole step (every layer, the
/// head) is one launch instead of hundreds. The step has fixed shapes: it attends over the cache's whole capacity with
/// a mask kept on the device, writes K/V at a slot index kept on the device, and moves the slot and the positions
/// forward on the device, so nothing in it reads a value back to the host. The first step runs eagerly (warm-up), the
/// second is captured and replayed, and each later one writes its input ids into a static tensor and replays. Without a
/// graph (tests on the CPU) every step runs the same fixed-shape work eagerly. One decoder serves any number of
/// sessions over the same cache (<see cref="Start"/>), so a <see cref="TokenGenerator"/> captures once per batch size
/// and capacity bucket.
/// </summary>
internal sealed class CudaGraphDecoder : IDisposable
{
    private readonly DecoderModel _model;
    private readonly KvCache _cache;
    private readonly CudaGraph? _graph;
    private readonly Tensor _ids;        // [B, 1] int64: this step's input tokens
    private readonly Tensor _positions;  // [B, 1] int64: their RoPE positions
    private readonly Tensor _slot;       // [1] int64: the cache slot this step writes
    private readonly Tensor _mask;       // [B, 1, 1, Capacity] bool: the slots each sequence attends to
    private Tensor? _logits;             // [B, 1, vocab]: the graph's output, rewritten by each replay
    private int _steps;                  // 0: warm-up, 1: capture, 2 and on: replay

    /// <summary>Allocates the step's static tensors for <paramref name="cache"/>; <see cref="Start"/> fills them after each prefill.</summary>
    /// <param name="model">The model, on CUDA.</param>
    /// <param name="cache">The cache every session of this decoder uses (no ring buffer).</param>
    /// <param name="useGraph">Capture and replay (CUDA, <see cref="CudaGraphs.IsAvailable"/>); false runs every step eagerly.</param>
    public CudaGraphDecoder(DecoderModel model, KvCache cache, bool useGraph = true)
    {
        _model = model;
        _cache = cache;
        _graph = useGraph ? new CudaGraph(CudaGraphs.Library!, cache.Device.index < 0 ? 0 : cache.Device.index) : null;
        using var scope = NewDisposeScope();
        var device = cache.Device;
        _ids = zeros([cache.BatchSize, 1], ScalarType.Int64, device).DetachFromDisposeScope();
        _positions = zeros([cache.BatchSize, 1], ScalarType.Int64, device).DetachFromDisposeScope();
        _slot = zeros([1], ScalarType.Int64, device).DetachFromDisposeScope();
        _mask = zeros([cache.BatchSize, 1, 1, cache.Capacity], ScalarType.Bool, device).DetachFromDisposeScope();
    }

    /// <summary>The cache this decoder writes.</summary>
    public KvCache Cache => _cache;

    /// <summary>
    /// Points the step at a new prefill that filled the cache up to its Length: the positions, slot and mask are written
    /// in place, so a graph captured in an earlier session replays for this one.
    /// </summary>
    /// <param name="nextPositions">Each sequence's next RoPE position.</param>
    /// <param name="paddingMask">[B, Length] (1 = token, 0 = padding), or null when nothing is padded.</param>
    public void Start(IReadOnlyList<long> nextPositions, Tensor? paddingMask)
    {
        using var scope = NewDisposeScope();
        _positions.copy_(tensor(nextPositions.ToArray()).view(_cache.BatchSize, 1));
        _slot.fill_(_cache.Length);
        _mask.fill_(false);
        var filled = _mask.narrow(3, 0, _cache.Length);
        if (paddingMask is null) filled.fill_(true);
        else filled.copy_(paddingMask.to(ScalarType.Bool).view(_cache.BatchSize, 1, 1, _cache.Length));
    }

    /// <summary>
    /// Runs one step for <paramref name="tokens"/> (one per sequence); returns the logits [B, vocab] on the device, in
    /// the model's dtype. With a graph they are a view of its output, rewritten by the next step: read them first.
    /// </summary>
    public Tensor Step(IReadOnlyList<long> tokens)
    {
        using var scope = NewDisposeScope();
        _ids.copy_(tensor(tokens.ToArray()).view(_ids.size(0), 1));   // the one upload of a step, before replay
        Tensor logits;
        switch (_graph is null ? -1 : Math.Min(_steps++, 2))
        {
            case -1:
                logits = Run();
                break;
            case 0:
                logits = _graph!.OnSideStream(Run);                      // warm-up: allocator, cuBLAS and RoPE tables ready
                break;
            case 1:
                _logits = _graph!.Capture(Run).DetachFromDisposeScope(); // recorded, not run
                _graph!.Replay();
                logits = _logits;
                break;
            default:
                _graph!.Replay();
                logits = _logits!;
                break;
        }
        _cache.Advance(1);
        return logits.squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>The step itself: all device work, no host reads.</summary>
    private Tensor Run()
    {
        using var scope = NewDisposeScope();
        _mask.index_fill_(3, _slot, true);                              // the new token's slot becomes visible
        Tensor logits;
        using (_cache.WritingAtDeviceSlot(_slot))
            logits = _model.DecodeFixed(_ids, _positions, _mask, _cache);
        _slot.add_(1L);
        _positions.add_(1L);
        return logits.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _logits?.Dispose();
        _ids.Dispose();
        _positions.Dispose();
        _slot.Dispose();
        _mask.Dispose();
    }
}
