DROP TABLE device_lists;
