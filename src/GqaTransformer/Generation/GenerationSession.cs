using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// One batch of sequences being generated: its <see cref="KvCache"/>, the attention mask of its left padding and
/// each sequence's next position. <see cref="Prefill"/> runs the prompts once; each <see cref="DecodeStep"/> runs one
/// token per sequence against the cache. Both return next-token logits [B, vocab] (float32, on the CPU), so each
/// can be timed and reused on its own.
/// </summary>
public sealed class GenerationSession : IDisposable
{
    private readonly DecoderModel _model;
    private readonly bool _ownsCache;
    private Tensor? _attentionMask;   // [B, tokens so far], 1 = token, 0 = padding; null while nothing is padded
    private long[] _nextPositions = []; // per sequence
    private readonly bool[] _seenTokens;
    private readonly List<int>[] _generated; // tokens fed back after the prompt: what each sequence has generated
    private readonly bool _useCudaGraphs;
    private CudaGraphDecoder? _graphs;  // set at the first decode step when graphs are used
    private readonly CudaGraphDecoder? _lentGraphs; // a decoder (and its cache) lent by a TokenGenerator, kept after the session

    /// <summary>Opens a session over <paramref name="model"/> with <paramref name="cache"/> (created for the batch if null).</summary>
    /// <param name="model">The model.</param>
    /// <param name="batchSize">Number of sequences.</param>
    /// <param name="capacity">Most tokens per sequence, prompt included.</param>
    /// <param name="cache">A cache to use, empty; null creates one that the session owns.</param>
    /// <param name="useCudaGraphs">On CUDA, replay decode steps from a captured CUDA graph where <see cref="CudaGraphs"/>
    /// are available and the cache is no ring buffer; elsewhere this changes nothing (see <see cref="UsesCudaGraphs"/>).</param>
    public GenerationSession(DecoderModel model, int batchSize, int capacity, KvCache? cache = null, bool useCudaGraphs = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        Guard.Positive(batchSize, nameof(batchSize));
        Guard.Positive(capacity, nameof(capacity));
        _model = model;
        if (cache is not null)
        {
            cache.EnsureCompatible(model.Config, batchSize, model.DeviceMap.Layers);
            if (cache.Length != 0)
                throw new ArgumentException($"The cache must be empty to start a session, but holds {cache.Length} tokens; call Reset().", nameof(cache));
            if (cache.Capacity < capacity)
                throw new ArgumentException($"The session needs {capacity} tokens per sequence, but the cache holds at most {cache.Capacity}.", nameof(cache));
        }
        Cache = cache ?? model.CreateCache(batchSize, capacity);
        _ownsCache = cache is null;
        BatchSize = batchSize;
        _seenTokens = new bool[batchSize * (long)model.Config.VocabSize];
        _generated = Enumerable.Range(0, batchSize).Select(_ => new List<int>()).ToArray();
        CudaGraphsUnavailableReason = !useCudaGraphs ? "not asked for"
            : Cache.Device.type != DeviceType.CUDA ? "the cache is not on CUDA"
            : model.IsDeviceMapped ? "the model spans several devices"
            : !CudaGraphs.IsAvailable ? CudaGraphs.UnavailableReason
            : model.FixedStepRefusal(Cache.Capacity);
        _useCudaGraphs = CudaGraphsUnavailableReason is null;
    }

    /// <summary>A session over the cache of <paramref name="graphs"/>, emptied first, whose decode steps replay that decoder's graph.</summary>
    internal GenerationSession(DecoderModel model, int batchSize, int capacity, CudaGraphDecoder graphs)
        : this(model, batchSize, capacity, Emptied(graphs.Cache), useCudaGraphs: true)
    {
        _lentGraphs = graphs;
        _useCudaGraphs = true; // the lent decoder's fixed-shape step, replayed from its graph where it has one
        CudaGraphsUnavailableReason = null;
    }

    private static KvCache Emptied(KvCache cache)
    {
        cache.Reset();
        return cache;
    }

    /// <summary>Whether decode steps replay a CUDA graph (asked for, on CUDA, graphs available, no ring buffer).</summary>
    public bool UsesCudaGraphs => _useCudaGraphs;

    /// <summary>Why decode steps do not replay a CUDA graph (for example a sliding layer that rings), or null when they do.</summary>
    public string? CudaGraphsUnavailableReason { get; }

    /// <summary>The session's KV cache.</summary>
    public KvCache Cache { get; }

    /// <summary>Number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>Which tokens each sequence has seen so far, [B, vocab] (for the repetition penalty).</summary>
    public Tensor SeenTokens() => tensor(_seenTokens).view(BatchSize, _model.Config.VocabSize);

    /// <summary>
    /// How often each token was generated so far in each sequence, [B, vocab] float32 on the CPU (the prompt not counted,
    /// as vLLM counts for its frequency and presence penalties).
    /// </summary>
    public Tensor GeneratedTokenCounts()
    {
        int vocab = _model.Config.VocabSize;
        var counts = new float[BatchSize * (long)vocab];
        for (int b = 0; b < BatchSize; b++)
            foreach (int token in _generated[b]) counts[b * (long)vocab + token]++;
        return tensor(counts).view(BatchSize, vocab);
    }

    /// <summary>
    /// Runs the prompts (one per sequence, lengths may differ: shorter ones are left-padded) in one forward and
    /// returns the logits for each sequence's next token, [B, vocab].
    /// </summary>
    public Tensor Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        using var scope = NewDisposeScope();
        return PrefillOnDevice(prompts).to(ScalarType.Float32, CPU).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Prefill"/>, the logits left on the model's device in its dtype (greedy choice needs only their argmax there).</summary>
    internal Tensor PrefillOnDevice(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count != BatchSize)
            throw new ArgumentException($"Expected {BatchSize} prompts, got {prompts.Count}.", nameof(prompts));
        if (Cache.Length != 0)
            throw new InvalidOperationException("Prefill runs once per session, on an empty cache.");
        int longest = 0;
        for (int b = 0; b < prompts.Count; b++)
        {
            var prompt = prompts[b] ?? throw new ArgumentNullException(nameof(prompts), $"Prompt {b} is null.");
            if (prompt.Count == 0) throw new ArgumentException($"Prompt {b} is empty; every prompt needs at least one token.", nameof(prompts));
            foreach (int id in prompt)
                if (id < 0 || id >= _model.Config.VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(prompts), id, $"Prompt {b} holds token id {id}, outside [0, {_model.Config.VocabSize}).");
            longest = Math.Max(longest, prompt.Count);
        }
        Cache.EnsureRoom(longest);

        var ids = new long[BatchSize * longest];
        var mask = new long[BatchSize * longest];
        var positions = new long[BatchSize * longest];
        _nextPositions = new long[BatchSize];
        for (int b = 0; b < BatchSize; b++)
        {
            int padding = longest - prompts[b].Count;
            for (int t = 0; t < longest; t++)
            {
                bool real = t >= padding;
                ids[b * longest + t] = real ? prompts[b][t - padding] : 0;
                mask[b * longest + t] = real ? 1 : 0;
                positions[b * longest + t] = real ? t - padding : 1; // HF: cumsum(mask) - 1, padding at 1
                if (real) _seenTokens[b * (long)_model.Config.VocabSize + prompts[b][t - padding]] = true;
            }
            _nextPositions[b] = prompts[b].Count;
        }
        bool padded = prompts.Any(p => p.Count != longest);
        using var scope = NewDisposeScope();
        var device = _model.Device;
        var idTensor = tensor(ids, device: device).view(BatchSize, longest);
        if (padded)
        {
            _attentionMask?.Dispose();
            _attentionMask = tensor(mask, device: device).view(BatchSize, longest).DetachFromDisposeScope();
        }
        var positionTensor = padded ? tensor(positions, device: device).view(BatchSize, longest) : null;
        var logits = _model.forward(idTensor, Cache, _attentionMask, positionTensor, lastTokenOnly: true); // [B, 1, V]
        return logits.squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>Feeds one token per sequence and returns the logits for the next, [B, vocab].</summary>
    public Tensor DecodeStep(IReadOnlyList<long> tokens)
    {
        using var scope = NewDisposeScope();
        return DecodeStepOnDevice(tokens).to(ScalarType.Float32, CPU).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="DecodeStep"/>, the logits left on the model's device in its dtype. With CUDA graphs they are a view of
    /// the graph's output that the next step rewrites: read them before it.
    /// </summary>
    internal Tensor DecodeStepOnDevice(IReadOnlyList<long> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        if (_nextPositions.Length == 0)
            throw new InvalidOperationException("Call Prefill before DecodeStep.");
        if (tokens.Count != BatchSize)
            throw new ArgumentException($"Expected one token for each of {BatchSize} sequences, got {tokens.Count}.", nameof(tokens));
        Cache.EnsureRoom(1);
        for (int b = 0; b < BatchSize; b++)
            if (tokens[b] < 0 || tokens[b] >= _model.Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[b], $"Token ids must be in [0, {_model.Config.VocabSize}), but sequence {b} got {tokens[b]}.");
        for (int b = 0; b < BatchSize; b++)
        {
            _seenTokens[b * (long)_model.Config.VocabSize + tokens[b]] = true;
            _generated[b].Add((int)tokens[b]);
        }
        if (_useCudaGraphs)
        {
            if (_graphs is null)
            {
                _graphs = _lentGraphs ?? new CudaGraphDecoder(_model, Cache);
                _graphs.Start(_nextPositions, _attentionMask);
            }
            for (int b = 0; b < BatchSize; b++) _nextPositions[b]++;
            return _graphs.Step(tokens);
        }
        using var scope = NewDisposeScope();
        var device = _model.Device;
        var ids = tensor(tokens.ToArray(), device: device).view(BatchSize, 1);
        Tensor? positions = null;
        if (_attentionMask is not null)
        {
            var grown = cat([_attentionMask, ones([BatchSize, 1], ScalarType.Int64, device)], 1).DetachFromDisposeScope();
            _attentionMask.Dispose();
            _attentionMask = grown;
            positions = tensor(_nextPositions, device: device).view(BatchSize, 1);
        }
        var logits = _model.forward(ids, Cache, _attentionMask, positions); // [B, 1, V]
        for (int b = 0; b < BatchSize; b++) _nextPositions[b]++;
        return logits.squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>Frees the attention mask, a CUDA graph it captured, and the cache if the session created it.</summary>
    public void Dispose()
    {
        if (_graphs != _lentGraphs) _graphs?.Dispose();
        _attentionMask?.Dispose();
        if (_ownsCache) Cache.Dispose();
    }
}
