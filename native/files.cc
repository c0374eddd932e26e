// Node-API functions on files: open, close, identity, filesystem type,
// reads and writes at an offset, tree removal, the no-replace rename and the naming of
// anonymous files.
#include "errors.h"
#include "instance.h"

namespace fslock {

namespace p = platform;

namespace {

Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = StrArg(info, 0, "path");
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  p::handle_t h;
  int r = p::Open(path.c_str(), flags, &h);
  if (r != 0) throw MakeSystemError(info.Env(), r, "open", path);
  TrackHandle(Inst(info.Env()), h);
  return Napi::Number::New(info.Env(), static_cast<double>(h));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int r = CloseHandle(Inst(info.Env()), IntArg(info, 0, "fd"));
  if (r != 0) throw MakeSystemError(info.Env(), r, "close");
  return info.Env().Undefined();
}

// adopt(fd): a descriptor opened outside fslock (by the compat layers, with
// Node's fs, so callers' fs hooks see the open) becomes one of this
// environment's: closed at teardown like those open() returns.
Napi::Value Adopt(const Napi::CallbackInfo& info) {
  TrackHandle(Inst(info.Env()), IntArg(info, 0, "fd"));
  return info.Env().Undefined();
}

Napi::Value Identity(const Napi::CallbackInfo& info) {
  p::Identity id;
  int r = p::GetIdentity(IntArg(info, 0, "fd"), &id);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fstat");
  return IdentityValue(info.Env(), id);
}

// Identity of the file at `path`, or null when nothing is there.
Napi::Value PathIdentity(const Napi::CallbackInfo& info) {
  std::string path = StrArg(info, 0, "path");
  p::Identity id;
  int r = p::StatPathIdentity(path.c_str(), &id);
  if (r != 0) {
    if (p::IsMissing(r)) return info.Env().Null();
    throw MakeSystemError(info.Env(), r, "stat", path);
  }
  return IdentityValue(info.Env(), id);
}

Napi::Value FsInfo(const Napi::CallbackInfo& info) {
  p::FsInfo fs;
  int r = p::GetFsInfo(IntArg(info, 0, "fd"), &fs);
  if (r != 0) throw MakeSystemError(info.Env(), r, "fstatfs");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("type", Napi::Number::New(info.Env(), static_cast<double>(fs.type)));
  o.Set("name", Napi::String::New(info.Env(), fs.name));
  return o;
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), "fslock binding: data must be a Buffer");
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

Napi::Value WriteAt(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  Napi::Buffer<uint8_t> buf = BufferArg(info, 1);
  size_t written = 0;
  int r = p::WriteAt(h, buf.Data(), buf.Length(), IntArg(info, 2, "offset"), &written);
  if (r != 0) throw MakeSystemError(info.Env(), r, "write");
  return Napi::Number::New(info.Env(), static_cast<double>(written));
}

Napi::Value ReadAt(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  Napi::Buffer<uint8_t> buf = BufferArg(info, 1);
  size_t got = 0;
  int r = p::ReadAt(h, buf.Data(), buf.Length(), IntArg(info, 2, "offset"), &got);
  if (r != 0) throw MakeSystemError(info.Env(), r, "read");
  return Napi::Number::New(info.Env(), static_cast<double>(got));
}

// renameNoReplace(from, to): fails with EEXIST instead of replacing; ENOSYS
// where the OS or filesystem cannot do that atomically.
Napi::Value RenameNoReplace(const Napi::CallbackInfo& info) {
  std::string from = StrArg(info, 0, "from");
  std::string to = StrArg(info, 1, "to");
  int r = p::RenameNoReplace(from.c_str(), to.c_str());
  if (r != 0) throw MakeSystemError(info.Env(), r, "rename", from);
  return info.Env().Undefined();
}

// moveAside(path, aside) -> null when nothing was at `path`, else what was
// moved there: { identity: "dev:ino" (null if it could not be lstat'ed), size }.
// See platform::MoveAside; ENOTSUP on Windows.
Napi::Value MoveAside(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StrArg(info, 0, "path");
  std::string aside = StrArg(info, 1, "aside");
  bool moved = false;
  bool found = false;
  p::Identity id;
  int64_t size = 0;
  int r = p::MoveAside(path.c_str(), aside.c_str(), &moved, &found, &id, &size);
  if (r != 0) throw MakeSystemError(env, r, "rename", path);
  if (!moved) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("identity", found ? Napi::Value(IdentityValue(env, id)) : env.Null());
  o.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  return o;
}

// removeTree(path) -> how many entries were deleted; see platform::RemoveTree.
Napi::Value RemoveTree(const Napi::CallbackInfo& info) {
  std::string path = StrArg(info, 0, "path");
  uint64_t removed = 0;
  int r = p::RemoveTree(path.c_str(), &removed);
  if (r != 0) throw MakeSystemError(info.Env(), r, "rm", path);
  return Napi::Number::New(info.Env(), static_cast<double>(removed));
}

// linkAnonymous(fd, to): names the anonymous file open as `fd` (see
// AnonymousFileFlags); EEXIST when anything is at `to`; ENOSYS where that
// cannot be done.
Napi::Value LinkAnonymous(const Napi::CallbackInfo& info) {
  p::handle_t h = IntArg(info, 0, "fd");
  std::string to = StrArg(info, 1, "to");
  int r = p::LinkAnonymous(h, to.c_str());
  if (r != 0) throw MakeSystemError(info.Env(), r, "link", to);
  return info.Env().Undefined();
}

}  // namespace

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("adopt", Napi::Function::New(env, Adopt, "adopt"));
  exports.Set("identity", Napi::Function::New(env, Identity, "identity"));
  exports.Set("pathIdentity", Napi::Function::New(env, PathIdentity, "pathIdentity"));
  exports.Set("fsInfo", Napi::Function::New(env, FsInfo, "fsInfo"));
  exports.Set("writeAt", Napi::Function::New(env, WriteAt, "writeAt"));
  exports.Set("readAt", Napi::Function::New(env, ReadAt, "readAt"));
  exports.Set("renameNoReplace", Napi::Function::New(env, RenameNoReplace, "renameNoReplace"));
  exports.Set("moveAside", Napi::Function::New(env, MoveAside, "moveAside"));
  exports.Set("removeTree", Napi::Function::New(env, RemoveTree, "removeTree"));
  exports.Set("linkAnonymous", Napi::Function::New(env, LinkAnonymous, "linkAnonymous"));
}

}  // namespace fslock
