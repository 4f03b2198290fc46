using System.Numerics;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace GqaTransformer;

/// <summary>
/// Autoregressive generation over a <see cref="DecoderModel"/> with its <see cref="KvCache"/>: the prompt is run
/// once (prefill), then one token per step reuses the cache (decode); the prompt is never re-run. Batches of prompts
/// of different lengths are left-padded, and each sequence stops on its own stop token.
/// On CUDA with <see cref="GenerationOptions.UseCudaGraphs"/>, the generator keeps one cache and one captured decode
/// graph per batch size and capacity bucket (a power of two) and reuses them in later calls, so a graph is captured
/// once, not per call; dispose the generator to free them. Calls that pass their own cache capture per call.
/// </summary>
public sealed class TokenGenerator : IDisposable
{
    private const int SmallestBucket = 256;
    private readonly Dictionary<(int Batch, int Capacity), CudaGraphDecoder> _graphs = [];
    private readonly HashSet<CudaGraphDecoder> _lent = [];
    private bool _disposed;

    /// <summary>Creates a generator for <paramref name="model"/>.</summary>
    public TokenGenerator(DecoderModel model) => Model = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>The model generating.</summary>
    public DecoderModel Model { get; }

    /// <summary>Generates a continuation of one prompt; returns the new tokens (ending with the stop token, if one came).</summary>
    public IReadOnlyList<int> Generate(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
        => Stream(prompt, options, cancellationToken).ToList();

    /// <summary>
    /// Generates continuations of several prompts in one batch; returns each sequence's new tokens. The result for each
    /// prompt equals generating it alone (greedy), up to floating-point rounding.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> Generate(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        KvCache? cache = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        var results = prompts.Select(_ => new List<int>()).ToArray();
        foreach (var step in StreamBatch(prompts, options, cache, cancellationToken))
            for (int b = 0; b < step.Length; b++)
                if (step[b] is { } token) results[b].Add(token);
        return results;
    }

    /// <summary>Yields each new token of one prompt's continuation as soon as it is chosen.</summary>
    public IEnumerable<int> Stream(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        foreach (var step in StreamBatch([prompt], options, cancellationToken: cancellationToken))
            yield return step[0]!.Value;
    }

    /// <summary>Asynchronous form of <see cref="Stream"/>: each token is yielded as it is produced.</summary>
    public async IAsyncEnumerable<int> StreamAsync(IReadOnlyList<int> prompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        using var enumerator = StreamBatch([prompt], options, cancellationToken: cancellationToken).GetEnumerator();
        while (true)
        {
            // Each step is compute-bound native work: run it off the caller's thread.
            bool more = await Task.Run(enumerator.MoveNext, cancellationToken).ConfigureAwait(false);
            if (!more) yield break;
            yield return enumerator.Current[0]!.Value;
        }
    }

    /// <summary>
    /// Generates for a batch and yields, after every step, one entry per sequence: its new token, or null once it has
    /// stopped. Ends when every sequence has stopped or produced <see cref="GenerationOptions.MaxNewTokens"/> tokens.
    /// Throws <see cref="OperationCanceledException"/> at the next step once <paramref name="cancellationToken"/> fires.
    /// </summary>
    public IEnumerable<int?[]> StreamBatch(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        KvCache? cache = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (prompts.Count == 0) throw new ArgumentException("At least one prompt is needed.", nameof(prompts));
        int longest = prompts.Max(p => p?.Count ?? 0);
        long needed = (long)longest + options.MaxNewTokens - 1; // the last token is never fed back
        if (cache is not null && needed > cache.Capacity)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNewTokens,
                $"MaxNewTokens {options.MaxNewTokens} after a {longest}-token prompt needs {needed} cache slots, but the cache holds {cache.Capacity}.");
        if (needed > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNewTokens, "MaxNewTokens is too large.");
        return Run(prompts, options, cache, (int)needed, cancellationToken);
    }

    private IEnumerable<int?[]> Run(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, KvCache? cache, int capacity,
        CancellationToken cancellationToken)
    {
        var stopTokens = (options.StopTokenIds ?? Model.Config.EosTokenIds ?? []).ToHashSet();
        var graphs = cache is null && options.UseCudaGraphs ? LendGraphs(prompts.Count, capacity) : null;
        try
        {
            foreach (var step in Steps(prompts, options, cache, capacity, graphs, stopTokens, cancellationToken))
                yield return step;
        }
        finally
        {
            if (graphs is not null) lock (_lent) _lent.Remove(graphs);
        }
    }

    private IEnumerable<int?[]> Steps(IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, KvCache? cache, int capacity,
        CudaGraphDecoder? graphs, HashSet<int> stopTokens, CancellationToken cancellationToken)
    {
        using var session = graphs is not null ? new GenerationSession(Model, prompts.Count, capacity, graphs)
            : new GenerationSession(Model, prompts.Count, capacity, cache, options.UseCudaGraphs); // its cache allocates in a scope of its own
        using var sampler = new TokenSampler(options);

        var finished = new bool[prompts.Count];
        var fed = new long[prompts.Count];

        for (int produced = 0; ; produced++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long[] chosen;
            // The step's tensors live in a scope of the step's own, opened and closed on the thread that runs it: a
            // scope that someone else left current on this thread (async code that awaits inside one) may be disposed
            // from another thread at any moment, and must not own our logits (see docs/guide.md, threads).
            using (NewDisposeScope())
            {
                var logits = produced == 0 ? session.PrefillOnDevice(prompts) : session.DecodeStepOnDevice(fed); // [B, V] on the device
                using var seen = options.PenalisesRepetition ? session.SeenTokens() : null;
                using var counts = options.PenalisesGeneratedTokens ? session.GeneratedTokenCounts() : null;
                chosen = sampler.Sample(logits, seen, counts);
            }
            var step = new int?[prompts.Count];
            for (int b = 0; b < chosen.Length; b++)
            {
                if (finished[b]) { fed[b] = 0; continue; }
                step[b] = (int)chosen[b];
                fed[b] = chosen[b];
                if (stopTokens.Contains((int)chosen[b])) finished[b] = true;
            }
            yield return step;
            if (produced + 1 >= options.MaxNewTokens || finished.All(f => f)) yield break;
        }
    }

    /// <summary>
    /// The kept decoder (with its cache) for this batch size and capacity's bucket, created at first use; null where
    /// graphs cannot run (not CUDA, no shim, a sliding-window ring buffer) or the one kept is in use by another call.
    /// </summary>
    private CudaGraphDecoder? LendGraphs(int batch, int capacity)
    {
        if (Model.Device.type != DeviceType.CUDA || Model.IsDeviceMapped || !CudaGraphs.IsAvailable) return null;
        int bucket = Math.Max(capacity, Math.Min(Math.Max(SmallestBucket, (int)BitOperations.RoundUpToPowerOf2((uint)capacity)),
                                                 Model.Config.MaxPositionEmbeddings));
        lock (_lent)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!Model.FixedStepServes(bucket)) return null; // a ring buffer has no fixed slots; LongRoPE switches tables
            if (!_graphs.TryGetValue((batch, bucket), out var graphs))
                _graphs[(batch, bucket)] = graphs = new CudaGraphDecoder(Model, Model.CreateCache(batch, bucket));
            return _lent.Add(graphs) ? graphs : null;
        }
    }

    /// <summary>Frees the caches and CUDA graphs kept for reuse (none off CUDA). Generation must not be running.</summary>
    public void Dispose()
    {
        lock (_lent)
        {
            if (_disposed) return;
            if (_lent.Count > 0) throw new InvalidOperationException("A generation is still running on this generator; finish or cancel it before disposing.");
            _disposed = true;
            foreach (var graphs in _graphs.Values)
            {
                graphs.Dispose();
                graphs.Cache.Dispose();
            }
            _graphs.Clear();
        }
    }
}
