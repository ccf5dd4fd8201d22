//! The instructors' commands: `grade`, `handout` (with the GitHub Classroom files it carries)
//! and `relay`.

pub mod classroom;
pub mod grade;
pub mod handout;
pub mod relay;
