/** The backupkit version written into each archive header; a test keeps it equal to package.json. */
export const BACKUPKIT_VERSION = '0.1.0';
