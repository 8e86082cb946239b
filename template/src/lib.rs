//! Snapshot/template format, copy-on-write fork and resize plans.
//!
//! A template is a directory holding a state file (versioned, checksummed, see [`state_file`])
//! and a sparse memory file (see [`memory_file`]). Restore maps the memory file copy-on-write
//! (see [`memory_map`]) so that all clones share the template's untouched pages.

mod atomic_file;
pub mod file_memory;
pub mod memory_file;
pub mod memory_map;
mod on_demand;
pub mod pagemap;
pub mod state_file;
pub mod template_dir;

pub use file_memory::{save_memory_from_files, FileRegionRef, MemoryFileOrigin};
pub use memory_file::{
    host_page_size, save_memory, GuestRegionRef, MemoryFileError, MemoryLayout, MemoryRegionEntry,
    PageScan, SaveOptions,
};
pub use memory_map::{
    map_memory, map_memory_from, map_memory_into, map_memory_prefetched, GuestMemoryMapping,
    MapError, MappedRegion, RestoreMode,
};
pub use on_demand::{serve_missing_pages, wait_for_faults, PageSource, Pager};
pub use state_file::{read_state, write_state, Durability, StateFileError};
pub use template_dir::{
    open_template, open_template_state, save_template, save_template_from_files,
    template_dir_from_url, SnapshotOptions, Template, TemplateError, TemplateManifest,
    MEMORY_FILE_NAME, STATE_FILE_NAME,
};
