DROP INDEX IF EXISTS channels_created_by;
