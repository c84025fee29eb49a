// oneDNN convolutions (NHWC x HWIO, float32, grouped or not) as XLA FFI handlers, for JAX on CPU.
//
// Three handlers -- forward, backward data, backward weights -- each taking the strides and explicit
// (low, high) paddings as attributes. The group count is the input's channels over the kernel's input channels
// (JAX's feature_group_count): a grouped HWIO kernel [kh, kw, C/G, O] is oneDNN's 5-D ``hwigo`` layout.
// Activations stay NHWC (oneDNN's brgconv kernels read them in place); the HWIO kernel is reordered per call
// into the blocked layout the primitive asks for (small next to the convolution).
// Primitives are built once per geometry and cached; scratchpads are per thread, so concurrent calls are safe.
// jaxgluon/models/onednn.py compiles this file on first use against the onednn-cpu-gomp wheel.
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, sh, sw, pt, pb, pl, pr, g;
  auto key() const { return std::make_tuple(n, h, w, c, kh, kw, o, sh, sw, pt, pb, pl, pr, g); }
  memory::desc src(tag t = tag::nhwc) const { return {{n, c, h, w}, dt::f32, t}; }
  memory::desc dst(tag t = tag::nhwc) const { return {{n, o, oh, ow}, dt::f32, t}; }
  memory::desc wei(tag t = tag::undef) const {
    if (g == 1) return {{o, c, kh, kw}, dt::f32, t == tag::undef ? tag::hwio : t};
    return {{g, o / g, c / g, kh, kw}, dt::f32, t == tag::undef ? tag::hwigo : t};
  }
  memory::dims strides() const { return {sh, sw}; }
  memory::dims pad_l() const { return {pt, pl}; }
  memory::dims pad_r() const { return {pb, pr}; }
};

dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc FwdPd(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, g.src(), g.wei(tag::any),
      g.dst(), g.strides(), g.pad_l(), g.pad_r(), Attr());
}

struct Plan {
  dnnl::primitive prim;
  memory::desc wei_desc;     // the weights layout the primitive wants
  dnnl::reorder reorder;   // user hwio <-> wei_desc, when they differ
  bool needs_reorder = false;
  memory::desc scratch_desc;
};

using PlanKey = decltype(std::tuple_cat(std::make_tuple(0), std::declval<Geometry>().key()));  // (kind, geometry)
std::mutex cache_mu;
std::map<PlanKey, std::shared_ptr<Plan>> cache;

std::shared_ptr<Plan> GetPlan(int kind, const Geometry& g) {
  auto key = std::tuple_cat(std::make_tuple(kind), g.key());
  std::lock_guard<std::mutex> lock(cache_mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto plan = std::make_shared<Plan>();
  auto fwd = FwdPd(g);
  if (kind == 0) {
    plan->prim = dnnl::convolution_forward(fwd);
    plan->wei_desc = fwd.weights_desc();
    plan->scratch_desc = fwd.scratchpad_desc();
  } else if (kind == 1) {
    auto pd = dnnl::convolution_backward_data::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.src(), g.wei(tag::any), g.dst(), g.strides(), g.pad_l(),
        g.pad_r(), fwd, Attr());
    plan->prim = dnnl::convolution_backward_data(pd);
    plan->wei_desc = pd.weights_desc();
    plan->scratch_desc = pd.scratchpad_desc();
  } else {
    auto pd = dnnl::convolution_backward_weights::primitive_desc(
        Engine(), dnnl::algorithm::convolution_direct, g.src(), g.wei(tag::any), g.dst(), g.strides(), g.pad_l(),
        g.pad_r(), fwd, Attr());
    plan->prim = dnnl::convolution_backward_weights(pd);
    plan->wei_desc = pd.diff_weights_desc();
    plan->scratch_desc = pd.scratchpad_desc();
  }
  plan->needs_reorder = plan->wei_desc != g.wei();
  if (plan->needs_reorder) {
    if (kind == 2)
      plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), plan->wei_desc, Engine(), g.wei()));
    else
      plan->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), g.wei(), Engine(), plan->wei_desc));
  }
  cache.emplace(key, plan);
  return plan;
}

// Per-thread buffers that only grow: XLA may run convolutions concurrently on its threads, and a fresh
// allocation per call would page-fault its way through tens of MB on every large convolution.
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

uint8_t* ThreadBuffer(int which, size_t bytes) {
  thread_local std::unique_ptr<void, FreeDeleter> buffers[2];
  thread_local size_t sizes[2] = {0, 0};
  if (sizes[which] < bytes) {
    bytes = (bytes + 4095) / 4096 * 4096;
    buffers[which].reset(std::aligned_alloc(4096, bytes));
    if (!buffers[which]) throw std::bad_alloc();
    sizes[which] = bytes;
  }
  return static_cast<uint8_t*>(buffers[which].get());
}

Geometry MakeGeometry(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> wd, ffi::Span<const int64_t> yd,
                      int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Geometry{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], yd[1], yd[2], sh, sw, pt, pb, pl, pr,
                  xd[3] / wd[2]};
}

ffi::Error Run(int kind, const Geometry& g, float* x, float* w, float* y) {
  try {
    auto plan = GetPlan(kind, g);
    dnnl::stream stream(Engine());
    memory scratch_mem(plan->scratch_desc, Engine(), ThreadBuffer(0, plan->scratch_desc.get_size() + 64));
    memory x_mem(g.src(), Engine(), x), y_mem(g.dst(), Engine(), y), w_user(g.wei(), Engine(), w);
    memory w_mem = w_user;
    if (plan->needs_reorder) {
      w_mem = memory(plan->wei_desc, Engine(), ThreadBuffer(1, plan->wei_desc.get_size() + 64));
      if (kind != 2) plan->reorder.execute(stream, w_user, w_mem);
    }
    if (kind == 0) {
      plan->prim.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem},
                                  {DNNL_ARG_SCRATCHPAD, scratch_mem}});
    } else if (kind == 1) {
      plan->prim.execute(stream, {{DNNL_ARG_DIFF_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem},
                                  {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
    } else {
      plan->prim.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_DIFF_WEIGHTS, w_mem},
                                  {DNNL_ARG_DIFF_DST, y_mem}, {DNNL_ARG_SCRATCHPAD, scratch_mem}});
      if (plan->needs_reorder) plan->reorder.execute(stream, w_mem, w_user);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution failed: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted, std::string("oneDNN convolution failed: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error ConvForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                           int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(0, g, x.typed_data(), w.typed_data(), y->typed_data());
}

ffi::Error ConvBackwardDataImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> dx,
                                int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(1, g, dx->typed_data(), w.typed_data(), dy.typed_data());
}

ffi::Error ConvBackwardWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dw,
                                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto g = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(2, g, x.typed_data(), dw->typed_data(), dy.typed_data());
}

}  // namespace

#define CONV_ATTRS                                                                                     \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl") \
      .Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JgConvForward, ConvForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JgConvBackwardData, ConvBackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JgConvBackwardWeights, ConvBackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
