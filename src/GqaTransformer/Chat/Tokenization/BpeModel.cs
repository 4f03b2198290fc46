using System.Collections.Concurrent;
using System.Text;

namespace GqaTransformer;

/// <summary>
/// The BPE model of a <c>tokenizer.json</c>: a vocabulary and ranked merges, applied as HF's tokenizers applies them
/// (its <c>models/bpe/word.rs</c>). A pre-token is split into characters (code points), each looked up in the vocabulary;
/// one that is missing becomes its UTF-8 bytes, <c>&lt;0xXX&gt;</c>, under <c>byte_fallback</c> (Llama 2, Gemma), else
/// <c>unk_token</c> (fused with a neighbouring unknown under <c>fuse_unk</c>). Then the adjacent pair of lowest rank is
/// merged, leftmost first, until no ranked pair is left, through a priority queue: a SentencePiece-style tokenizer has
/// no pre-tokenizer, so a whole text is one piece, and rescanning it for every merge would be quadratic.
/// <c>ignore_merges</c> takes a pre-token found whole in the vocabulary as it is (Llama 3).
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCached = 200_000;
    private const int MaxCachedLength = 256;    // longer pieces (a whole SentencePiece text) are not kept, as HF's cache
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<(int Left, int Right), (int Rank, int Id)> _merges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly bool _ignoreMerges, _byteFallback, _fuseUnknown;
    private readonly int? _unknownId;
    private readonly int[]?[] _byteIds = new int[]?[256];

    /// <exception cref="InvalidDataException">A merge names a symbol, or makes one, that is not in the vocabulary; or unk_token is not in it.</exception>
    public BpeModel(Dictionary<string, int> vocab, List<(string, string)> merges, bool ignoreMerges, bool byteFallback, string? unknownToken, bool fuseUnknown)
    {
        _vocab = vocab;
        _merges = new Dictionary<(int, int), (int, int)>(merges.Count);
        for (int i = 0; i < merges.Count; i++)
        {
            var (a, b) = merges[i];
            if (!vocab.TryGetValue(a, out int left) || !vocab.TryGetValue(b, out int right) || !vocab.TryGetValue(a + b, out int merged))
                throw new InvalidDataException($"tokenizer.json's merge {i} ('{a}' '{b}') names or makes a token that is not in its vocabulary.");
            _merges[(left, right)] = (i, merged);    // a repeated pair keeps its last rank, as HF's map does
        }
        _ignoreMerges = ignoreMerges;
        _byteFallback = byteFallback;
        _fuseUnknown = fuseUnknown;
        for (int b = 0; b < 256; b++)
            if (vocab.TryGetValue($"<0x{b:X2}>", out int id)) _byteIds[b] = [id];
        if (unknownToken is not null)
        {
            if (!vocab.TryGetValue(unknownToken, out int id))
                throw new InvalidDataException($"tokenizer.json names unk_token '{unknownToken}', which is not in its vocabulary.");
            _unknownId = id;
        }
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    /// <summary>The ids of one pre-token.</summary>
    /// <exception cref="InvalidOperationException">A character is not in the vocabulary, and neither bytes nor unk_token can stand for it.</exception>
    public int[] Tokenize(string piece)
    {
        if (piece.Length == 0) return [];
        if (_cache.TryGetValue(piece, out var cached)) return cached;
        int[] ids = _ignoreMerges && _vocab.TryGetValue(piece, out int whole) ? [whole] : MergeAll(Symbols(piece));
        if (piece.Length <= MaxCachedLength && _cache.Count < MaxCached) _cache.TryAdd(piece, ids);
        return ids;
    }

    /// <summary>The ids of the characters of <paramref name="piece"/> before any merge (HF's merge_word).</summary>
    private List<int> Symbols(string piece)
    {
        var symbols = new List<int>(piece.Length);
        int? pendingUnknown = null;        // an unknown run waits so that fuse_unk can join the next one to it
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in piece.EnumerateRunes())
        {
            string text = rune.ToString();
            if (_vocab.TryGetValue(text, out int id))
            {
                if (pendingUnknown is { } u) { symbols.Add(u); pendingUnknown = null; }
                symbols.Add(id);
                continue;
            }
            if (_byteFallback)
            {
                int length = rune.EncodeToUtf8(utf8);
                bool all = true;
                for (int i = 0; i < length; i++) all &= _byteIds[utf8[i]] is not null;
                if (all)
                {
                    // HF adds the bytes without first adding a pending unknown (it comes after them); kept for parity.
                    for (int i = 0; i < length; i++) symbols.Add(_byteIds[utf8[i]]![0]);
                    continue;
                }
            }
            if (_unknownId is not { } unknown)
                throw new InvalidOperationException($"'{text}' is not in the tokenizer's vocabulary, and it has no unk_token.");
            if (pendingUnknown is { } previous && !_fuseUnknown) symbols.Add(previous);
            pendingUnknown = unknown;
        }
        if (pendingUnknown is { } last) symbols.Add(last);
        return symbols;
    }

    /// <summary>
    /// Merges the lowest-ranked adjacent pair, leftmost on ties, until none is left (HF's Word::merge_all): symbols in a
    /// linked list, candidate pairs in a queue by (rank, position); a queued pair whose symbols have since changed is skipped.
    /// </summary>
    private int[] MergeAll(List<int> ids)
    {
        int n = ids.Count;
        if (n < 2) return [.. ids];
        var id = ids.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1; prev[i] = i - 1; alive[i] = true; }
        var queue = new PriorityQueue<(int Pos, int Id), (int Rank, int Pos)>();
        for (int i = 0; i + 1 < n; i++) Push(i, i + 1);
        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] >= n) continue;
            int right = next[pos];
            if (!_merges.TryGetValue((id[pos], id[right]), out var merge) || merge.Id != top.Id) continue;   // stale entry
            id[pos] = merge.Id;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] < n) prev[next[right]] = pos;
            if (prev[pos] >= 0) Push(prev[pos], pos);
            if (next[pos] < n) Push(pos, next[pos]);
        }
        var result = new List<int>(n);
        for (int i = 0; i < n; i = next[i]) result.Add(id[i]);     // position 0 is never merged away: merges keep the left symbol
        return [.. result];

        void Push(int left, int right)
        {
            if (_merges.TryGetValue((id[left], id[right]), out var m)) queue.Enqueue((left, m.Id), (m.Rank, left));
        }
    }
}
