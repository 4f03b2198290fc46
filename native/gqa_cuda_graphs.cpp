// GqaTransformer's CUDA-graph shim: a C ABI over libtorch's at::cuda::CUDAGraph, which TorchSharp 0.107 does not bind.
// libtorch's graph captures whatever the calling thread issues on its current CUDA stream, whoever issues it, so .NET
// code captures a decode step made of ordinary TorchSharp ops between gqa_graph_capture_begin and _end. Every call
// returns 0 on success or -1 with the reason in gqa_last_error(); no C++ exception crosses the boundary.
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/ops/rms_norm.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/version.h>

#include <exception>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>

namespace {

thread_local std::string last_error;

// One side stream per device for every graph's warm-up and capture, taken by one thread at a time (enter to exit).
// A stream per graph would cost a cuBLAS workspace per graph (libtorch keys workspaces by handle and stream, 32 MiB
// each on Hopper) that outlives the graph: 32 MiB more device memory per load/dispose cycle (ADR 0019).
struct SideStream {
    explicit SideStream(c10::cuda::CUDAStream s) : stream(s) {}
    c10::cuda::CUDAStream stream;
    std::mutex in_use;
    std::atomic<std::thread::id> owner{};  // who holds in_use: a second entry by the owner fails instead of deadlocking
};

SideStream& side_stream(c10::DeviceIndex device) {
    static std::mutex table_lock;
    static std::map<c10::DeviceIndex, std::unique_ptr<SideStream>> table;
    std::lock_guard<std::mutex> guard(table_lock);
    auto& entry = table[device];
    if (!entry) entry = std::make_unique<SideStream>(c10::cuda::getStreamFromPool(false, device));
    return *entry;
}

struct Graph {
    // The CUDAGraph lives in a buffer larger than any libtorch version's object, so a build against one version's
    // headers never writes past it when another version's out-of-line constructor runs (the loader checks versions too).
    alignas(64) unsigned char storage[16384];
    at::cuda::CUDAGraph* graph = nullptr;
    SideStream* side = nullptr;                     // capture and warm-up run here: capture refuses the default stream
    std::optional<c10::cuda::CUDAStream> previous;  // the thread's stream before entering the side stream
};

template <typename F>
int guarded(F&& body) {
    try {
        body();
        return 0;
    } catch (const std::exception& e) {
        last_error = e.what();
    } catch (...) {
        last_error = "unknown C++ exception";
    }
    return -1;
}

Graph* as_graph(void* handle) {
    if (handle == nullptr) throw std::invalid_argument("graph handle is null");
    return static_cast<Graph*>(handle);
}

}  // namespace

extern "C" {

const char* gqa_last_error() { return last_error.c_str(); }

// The libtorch version this library was compiled against, e.g. "2.11.0".
const char* gqa_built_torch_version() { return TORCH_VERSION; }

int gqa_graph_create(int device, void** handle) {
    return guarded([&] {
        static_assert(sizeof(at::cuda::CUDAGraph) <= sizeof(Graph::storage), "CUDAGraph outgrew its buffer");
        auto* g = new Graph();
        try {
            g->graph = new (g->storage) at::cuda::CUDAGraph();
            g->side = &side_stream(static_cast<c10::DeviceIndex>(device));
        } catch (...) {
            delete g;
            throw;
        }
        *handle = g;
    });
}

// Makes the graph's side stream current on this thread, after the work already queued on the current stream. The
// stream is this thread's until gqa_graph_exit_stream: another thread entering waits.
int gqa_graph_enter_stream(void* handle) {
    return guarded([&] {
        Graph* g = as_graph(handle);
        if (g->previous) throw std::logic_error("gqa_graph_enter_stream twice without gqa_graph_exit_stream");
        if (g->side->owner.load() == std::this_thread::get_id())
            throw std::logic_error("this thread is already on the side stream (another graph's enter without exit)");
        std::unique_lock<std::mutex> taken(g->side->in_use);
        auto previous = c10::cuda::getCurrentCUDAStream(g->side->stream.device_index());
        at::cuda::CUDAEvent ready;
        ready.record(previous);
        ready.block(g->side->stream);
        c10::cuda::setCurrentCUDAStream(g->side->stream);
        g->previous = previous;
        g->side->owner.store(std::this_thread::get_id());
        taken.release();  // held until exit
    });
}

// Makes the thread's previous stream current again, after the work queued on the side stream, and frees the stream.
int gqa_graph_exit_stream(void* handle) {
    return guarded([&] {
        Graph* g = as_graph(handle);
        if (!g->previous) throw std::logic_error("gqa_graph_exit_stream without gqa_graph_enter_stream");
        std::unique_lock<std::mutex> taken(g->side->in_use, std::adopt_lock);
        g->side->owner.store(std::thread::id{});
        auto previous = *g->previous;
        g->previous.reset();
        c10::cuda::setCurrentCUDAStream(previous);
        at::cuda::CUDAEvent done;
        done.record(g->side->stream);
        done.block(previous);
    });
}

// Starts capturing what this thread issues on the side stream (enter it first), into a private memory pool.
int gqa_graph_capture_begin(void* handle) {
    return guarded([&] { as_graph(handle)->graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal); });
}

int gqa_graph_capture_end(void* handle) {
    return guarded([&] { as_graph(handle)->graph->capture_end(); });
}

// Launches the captured work on the thread's current stream.
int gqa_graph_replay(void* handle) {
    return guarded([&] { as_graph(handle)->graph->replay(); });
}

// RMSNorm over the last dimension by libtorch's fused kernel (two launches where the managed form takes seven), which
// TorchSharp 0.107 does not bind. As HF: normalised in float32, rounded to x's dtype, then times the weight (the fused
// kernel given the weight would round once, after it, and bf16 results would differ from HF's in the last bit).
// Tensors are TorchSharp's handles (at::Tensor*); the result is a new handle that TorchSharp owns and frees.
int gqa_rms_norm(const at::Tensor* x, const at::Tensor* weight, double eps, at::Tensor** out) {
    return guarded([&] {
        if (x == nullptr || weight == nullptr || out == nullptr) throw std::invalid_argument("null tensor handle");
        *out = new at::Tensor(at::rms_norm(*x, {x->size(-1)}, std::nullopt, eps).mul_(*weight));
    });
}

// Turns libtorch's CUDA autocast on (to scalar_type, a c10::ScalarType value such as 15 for bfloat16) or off for this
// thread, as torch.autocast does: matmuls issued from TorchSharp then run in that type from float32 weights, reductions
// and losses stay float32. TorchSharp 0.107 binds no autocast. Calls nest; the cast weights are dropped at the outermost off.
int gqa_autocast(int enabled, int scalar_type) {
    return guarded([&] {
        if (enabled) {
            at::autocast::set_autocast_dtype(at::kCUDA, static_cast<at::ScalarType>(scalar_type));
            at::autocast::set_autocast_enabled(at::kCUDA, true);
            at::autocast::increment_nesting();
        } else {
            at::autocast::set_autocast_enabled(at::kCUDA, false);
            if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        }
    });
}

// The caching allocator's bytes on one device now: held by live tensors (allocated) and taken from the driver
// (reserved), as torch.cuda.memory_allocated and memory_reserved report; TorchSharp 0.107 binds neither. Index 0 of
// each stat array is the aggregate over pools in every libtorch version that has these stats.
int gqa_cuda_memory(int device, long long* allocated, long long* reserved) {
    return guarded([&] {
        if (allocated == nullptr || reserved == nullptr) throw std::invalid_argument("null output pointer");
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
        *allocated = stats.allocated_bytes[0].current;
        *reserved = stats.reserved_bytes[0].current;
    });
}

// The driver's free and total bytes on one device (cudaMemGetInfo), as torch.cuda.mem_get_info.
int gqa_cuda_mem_get_info(int device, long long* free_bytes, long long* total_bytes) {
    return guarded([&] {
        if (free_bytes == nullptr || total_bytes == nullptr) throw std::invalid_argument("null output pointer");
        c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
        size_t free_now = 0, total = 0;
        C10_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
        *free_bytes = static_cast<long long>(free_now);
        *total_bytes = static_cast<long long>(total);
    });
}

// Returns the allocator's unused cached blocks to the driver, as torch.cuda.empty_cache.
int gqa_cuda_empty_cache() {
    return guarded([] { c10::cuda::CUDACachingAllocator::emptyCache(); });
}

void gqa_graph_destroy(void* handle) {
    if (handle == nullptr) return;
    auto* g = static_cast<Graph*>(handle);
    try {
        g->graph->~CUDAGraph();
    } catch (...) {
    }
    delete g;
}

}  // extern "C"
