/**
 * Filesystems on which locks are known to lie (docs/platforms.md). Used
 * when a session opens and by `fslock probe`.
 */
import { binding } from './binding.js';

export interface FsWarning {
  /** Short name: 'nfs', 'smb', 'fuse', '9p', 'overlay'. */
  kind: string;
  /** What goes wrong there. */
  why: string;
}

/** statfs f_type magic numbers (Linux). */
export const LINUX_FS_MAGIC: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x6969: 'nfs',
  0xfe534d42: 'smb2',
  0xff534d42: 'cifs',
  0x65735546: 'fuse',
  0x01021997: '9p',
  0x794c7630: 'overlayfs',
  0x2fc12fc1: 'zfs',
  0x4d44: 'vfat',
  0x5346544e: 'ntfs',
  0x65735543: 'fusectl',
  0x858458f6: 'ramfs',
  0xf2f52010: 'f2fs',
};

const UNRELIABLE: Record<string, FsWarning> = {
  nfs: {
    kind: 'nfs',
    why: 'NFS emulates flock with POSIX locks, mounts with nolock/local_lock give no cross-host exclusion, and a lost lease fails later I/O with EIO',
  },
  smb2: { kind: 'smb', why: 'SMB turns flock into a mandatory whole-file lock (Linux) or refuses it (macOS)' },
  cifs: { kind: 'smb', why: 'SMB turns flock into a mandatory whole-file lock (Linux) or refuses it (macOS)' },
  smbfs: { kind: 'smb', why: 'SMB turns flock into a mandatory whole-file lock (Linux) or refuses it (macOS)' },
  fuse: {
    kind: 'fuse',
    why: "FUSE either keeps locks local to the mount or forwards them as the daemon's own POSIX locks, which do not exclude client processes from each other; forwarded waits can be uninterruptible",
  },
  '9p': { kind: '9p', why: '9p forwards locks to the host with weak semantics' },
  overlayfs: {
    kind: 'overlay',
    why: 'a lock through the merged path does not exclude one through the upper layer, and two overlay mounts sharing a lower file do not exclude each other',
  },
};

export interface FsDescription {
  /** Human name ('ext2/3/4', 'tmpfs', 'apfs', …) or the hex magic when unknown. */
  name: string;
  /** statfs f_type on Linux, 0 elsewhere. */
  magic: number;
  warning: FsWarning | null;
}

export function describeFs(fd: number): FsDescription {
  const info = binding.fsInfo(fd);
  let name: string;
  if (info.name) {
    name = info.name.toLowerCase();
  } else {
    name = LINUX_FS_MAGIC[info.type] ?? `0x${info.type.toString(16)}`;
  }
  let warning = UNRELIABLE[name] ?? null;
  if (!warning && (name.includes('fuse') || name === 'webdav')) warning = UNRELIABLE.fuse ?? null;
  return { name, magic: info.type, warning };
}
