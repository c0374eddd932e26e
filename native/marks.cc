// Node-API functions of the process-wide marks (shared by every worker
// thread): the session protocol marks the sessions that are live anywhere in
// this process, so no collector in the process ever considers them.
#include <unordered_set>

#include "instance.h"

namespace fslock {

namespace {

std::mutex g_marks_mu;
std::unordered_multiset<std::string> g_marks;

Napi::Value Mark(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "key");
  bool add = BoolArg(info, 1);
  Instance* inst = Inst(info.Env());
  std::lock_guard<std::mutex> lk(g_marks_mu);
  std::lock_guard<std::mutex> lk2(inst->mu);
  if (add) {
    g_marks.insert(key);
    inst->marks.insert(key);
  } else if (inst->marks.erase(key) > 0) {
    auto it = g_marks.find(key);
    if (it != g_marks.end()) g_marks.erase(it);
  }
  return info.Env().Undefined();
}

Napi::Value IsMarked(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "key");
  std::lock_guard<std::mutex> lk(g_marks_mu);
  return Napi::Boolean::New(info.Env(), g_marks.count(key) > 0);
}

}  // namespace

void CleanupMarks(Instance* inst) {
  std::set<std::string> marks;
  {
    std::lock_guard<std::mutex> lk(inst->mu);
    marks.swap(inst->marks);
  }
  std::lock_guard<std::mutex> lk(g_marks_mu);
  for (const auto& m : marks) {
    auto it = g_marks.find(m);
    if (it != g_marks.end()) g_marks.erase(it);
  }
}

void InitMarks(Napi::Env env, Napi::Object exports) {
  exports.Set("mark", Napi::Function::New(env, Mark, "mark"));
  exports.Set("isMarked", Napi::Function::New(env, IsMarked, "isMarked"));
}

}  // namespace fslock
