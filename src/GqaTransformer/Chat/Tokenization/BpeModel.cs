using System.Collections.Concurrent;
using System.Text;

namespace GqaTransformer;

/// <summary>
/// The BPE model of a <c>tokenizer.json</c>: a vocabulary and ranked merges. A pre-token is split into characters
/// (code points), then the adjacent pair of lowest rank is merged, leftmost first, until no ranked pair is left, as HF's
/// tokenizers does. <c>ignore_merges</c> takes a pre-token found whole in the vocabulary as it is (Llama 3);
/// <c>byte_fallback</c> spells a symbol outside the vocabulary as its UTF-8 bytes, <c>&lt;0xXX&gt;</c> (Llama 2, Mistral).
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCached = 200_000;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<(string, string), int> _ranks;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly bool _ignoreMerges, _byteFallback, _fuseUnknown;
    private readonly int? _unknownId;

    public BpeModel(Dictionary<string, int> vocab, List<(string, string)> merges, bool ignoreMerges, bool byteFallback, string? unknownToken, bool fuseUnknown)
    {
        _vocab = vocab;
        _ranks = new Dictionary<(string, string), int>(merges.Count);
        for (int i = 0; i < merges.Count; i++) _ranks.TryAdd(merges[i], i);
        _ignoreMerges = ignoreMerges;
        _byteFallback = byteFallback;
        _fuseUnknown = fuseUnknown;
        if (unknownToken is not null)
        {
            if (!vocab.TryGetValue(unknownToken, out int id))
                throw new InvalidDataException($"tokenizer.json names unk_token '{unknownToken}', which is not in its vocabulary.");
            _unknownId = id;
        }
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    /// <summary>The ids of one pre-token.</summary>
    public int[] Tokenize(string piece)
    {
        if (piece.Length == 0) return [];
        if (_cache.TryGetValue(piece, out var cached)) return cached;
        int[] ids = _ignoreMerges && _vocab.TryGetValue(piece, out int whole) ? [whole] : ToIds(Merge(piece));
        if (_cache.Count < MaxCached) _cache.TryAdd(piece, ids);
        return ids;
    }

    private List<string> Merge(string piece)
    {
        var symbols = piece.EnumerateRunes().Select(r => r.ToString()).ToList();
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (_ranks.TryGetValue((symbols[i], symbols[i + 1]), out int rank) && rank < bestRank) { bestRank = rank; best = i; }
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        return symbols;
    }

    private int[] ToIds(List<string> symbols)
    {
        var ids = new List<int>(symbols.Count);
        bool lastWasUnknown = false;
        foreach (var symbol in symbols)
        {
            if (_vocab.TryGetValue(symbol, out int id)) { ids.Add(id); lastWasUnknown = false; continue; }
            if (_byteFallback)
            {
                var bytes = Encoding.UTF8.GetBytes(symbol);
                var byteIds = bytes.Select(b => _vocab.TryGetValue($"<0x{b:X2}>", out int byteId) ? byteId : -1).ToArray();
                if (byteIds.All(b => b >= 0)) { ids.AddRange(byteIds); lastWasUnknown = false; continue; }
            }
            if (_unknownId is not { } unknown)
                throw new InvalidOperationException($"'{symbol}' is not in the tokenizer's vocabulary, and it has no unk_token.");
            if (!(_fuseUnknown && lastWasUnknown)) ids.Add(unknown);
            lastWasUnknown = true;
        }
        return [.. ids];
    }
}
